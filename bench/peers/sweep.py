"""Tunes the peers (and Kennel's workers, threads and batches) on this machine: each configuration afresh,
a short warm-up, then wrk at concurrency 1 and 16; prints one line per point and writes them as JSON.

    .venv/bin/python -m bench.peers.sweep --out /tmp/sweep.json                 # both peers, both precisions
    .venv/bin/python -m bench.peers.sweep --only litserve --precision fp32 --seconds 4
    .venv/bin/python -m bench.peers.sweep --only kennel --image kennel-serve:local   # Kennel's own grid

The grid is what a user of each peer would try on two cores: one process with both cores for ONNX Runtime or
one process per core, batches of 4 to 16, and for LitServe its batch timeout. The configurations that
bench/serve.py runs (`TUNED`) are the best at concurrency 16 here; docs/benchmarks.md has the figures.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import docker

from bench import serve
from bench.peers import host
from bench.peers.host import PeerTuning
from bench.standins import workspace

GRID = {
    "litserve": [
        PeerTuning("litserve", workers, threads, batch, wait)
        for workers, threads, batch, wait in (
            (1, 2, 8, 0),
            (2, 1, 4, 0),
            (2, 1, 8, 0),
            (2, 1, 16, 0),
            (2, 1, 8, 10),
            (1, 1, 8, 0),
        )
    ],
    "bentoml": [
        PeerTuning("bentoml", workers, threads, batch)
        for workers, threads, batch in ((1, 2, 8), (2, 1, 4), (2, 1, 8), (2, 1, 16), (1, 1, 8))
    ],
}
# Kennel: SAGEMAKER_MODEL_SERVER_WORKERS x ONNX Runtime threads per worker (KENNEL_CPUS / workers) x batches
# at once in each worker (KENNEL_CONCURRENT_BATCHES) x images per batch (KENNEL_MAX_BATCH_SIZE).
KENNEL_GRID = [
    (1, 2, 1, 16), (1, 2, 2, 16), (2, 1, 1, 16), (1, 2, 2, 8), (1, 2, 2, 4), (1, 2, 1, 4), (2, 2, 1, 4)
]  # fmt: skip


def measure(running: serve.Running, jpeg: bytes, body: Path, seconds: float) -> dict:
    ready = serve.wait_ready(running, jpeg, time.perf_counter())
    serve.warm_up(running.predict_url, body)
    points = {c: serve.run_load(running.predict_url, body, c, seconds) for c in (1, 16)}
    return {"first_prediction_s": ready["first_prediction_s"], "memory_bytes": running.memory_bytes(),
            "points": points, "load_average": os.getloadavg()[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=[*host.PEERS, "kennel"], action="append")
    parser.add_argument("--precision", choices=["fp32", "int8"], action="append")
    parser.add_argument("--seconds", type=float, default=6.0, help="per concurrency point")
    parser.add_argument("--image", default="kennel-serve:local")
    parser.add_argument("--model-dir", type=Path, help="a benchmark model directory to reuse")
    parser.add_argument("--reps", type=int, default=1, help="passes over the grid, interleaved")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    kinds = args.only or list(host.PEERS)
    host.install(tuple(kind for kind in kinds if kind in host.PEERS))
    results = []
    with tempfile.TemporaryDirectory(prefix="kennel-sweep-") as tmp:
        work = Path(tmp)
        jpegs, body, model_dir = workspace(work, args.model_dir)
        for _, precision in (
            (rep, p) for rep in range(args.reps) for p in args.precision or ["fp32", "int8"]
        ):
            for kind in kinds:
                grid = KENNEL_GRID if kind == "kennel" else GRID[kind]
                for config in grid:
                    if kind == "kennel":
                        workers, threads, batches, batch_size = config
                        environment = {"KENNEL_PRECISION": precision,
                                       "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
                                       "KENNEL_CPUS": str(workers * threads),
                                       "KENNEL_CONCURRENT_BATCHES": str(batches),
                                       "KENNEL_MAX_BATCH_SIZE": str(batch_size)}  # fmt: skip
                        name = (
                            f"Kennel {workers} worker(s) x {threads} thread(s), {batches} batch(es) of at "
                            f"most {batch_size} at once"
                        )
                        running = serve.start_kennel(
                            docker.from_env(),
                            args.image,
                            model_dir,
                            serve.Server(name, "kennel", environment),
                        )
                    else:
                        name = config.describe()
                        peer = host.start(config, model_dir, precision, f"0-{serve.CPUS - 1}",
                                          work / uuid.uuid4().hex[:8])  # fmt: skip
                        running = serve.Running(peer.predict_url, peer.ping_url, peer.stop, peer.rss_bytes)
                    try:
                        result = measure(running, jpegs[0], body, args.seconds)
                    finally:
                        running.stop()
                    c1, c16 = result["points"][1], result["points"][16]
                    print(
                        f"{precision} {name}: c=1 {c1['rps']:.1f} req/s p99 {c1['p99']:.0f} ms; c=16 "
                        f"{c16['rps']:.1f} req/s p99 {c16['p99']:.0f} ms, failed {c16['failed']}; "
                        f"{result['memory_bytes'] / 1e6:.0f} MB",
                        flush=True,
                    )
                    results.append(
                        {"precision": precision, "server": name, "seconds": args.seconds, **result}
                    )
    for line in best(results):
        print(line)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


def best(results: list[dict]) -> list[str]:
    """Per server kind and precision, the configuration with the highest median throughput at concurrency
    16 over the passes."""
    by_config: dict[tuple[str, str], list[float]] = {}
    for row in results:
        by_config.setdefault((row["precision"], row["server"]), []).append(row["points"][16]["rps"])
    winners: dict[tuple[str, str], tuple[float, str]] = {}
    for (precision, server), values in by_config.items():
        key, figure = (precision, server.split(":")[0].split()[0]), statistics.median(values)
        if figure > winners.get(key, (-1.0, ""))[0]:
            winners[key] = (figure, server)
    return [f"best {precision}: {server} ({rps:.1f} req/s at c=16)" for (precision, _), (rps, server) in
            winners.items()]  # fmt: skip


if __name__ == "__main__":
    main()
