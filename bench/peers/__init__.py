"""BentoML 1.4 and LitServe 0.2, served the way Kennel is served, for the serving benchmark.

Each peer runs in its own virtual environment under .kennel/ (from bench/requirements-bentoml.txt and
bench/requirements-litserve.txt; `python -m bench.peers.host install` makes them, `make bench` runs it), on
the host under `taskset -c 0-1`, and serves the benchmark's model directory with the serving image's own
decoding and preprocessing (`bench/peers/model.py`). `host.py` starts and stops them; `sweep.py` tunes them.

The modules `model.py`, `bentoml_service.py` and `litserve_app.py` run inside the peers' environments and
import only what those have (numpy, ONNX Runtime, Pillow, the peer itself) plus kennel_serve and
kennel_common from this repository.
"""
