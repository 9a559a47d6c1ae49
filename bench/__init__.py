"""Kennel's benchmarks; results go to bench/results/ and, through `python -m bench.report`, to
docs/benchmarks.md. Every entry point runs as a module from the repository root, with the two images'
packages importable as pytest has them (pyproject.toml):

    export PYTHONPATH=containers/serve:containers/train
    .venv/bin/python -m bench.serve --help
    .venv/bin/python -m bench.report

`make bench` and `make soak` do both.
"""
