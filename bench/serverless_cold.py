"""Cold start under serverless memory sizes: the serving image's first prediction after `docker run
--memory=N` for each memory size SageMaker serverless offers, fp32 and INT8; writes JSON.

    KENNEL_TAG=local .venv/bin/python -m bench.serverless_cold --out bench/results/serverless-cold.json

The model is bench/standins.py's (ResNet-50, 133 classes, random weights, seed 0, with its INT8 model). Each
start is `docker run --memory=N --memory-swap=N --cpus=2` on the host network; the clock runs from just
before `docker run` to the first 200 from /invocations. Serverless gives vCPUs in proportion to memory,
which a local container cannot copy: every size here gets the same two cores, so the figures isolate
what the memory limit does (nothing, unless the container is killed).
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench import standins
from bench.standins import make_jpegs, wait_ready

MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_prediction(image: str, model_dir: Path, memory_mb: int, precision: str, jpeg: bytes) -> dict:
    port = free_port()
    name = f"kennel-cold-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    subprocess.run(
        [
            *("docker", "run", "-d", "--rm", "--name", name, "--network=host", "--cpus=2"),
            *(f"--memory={memory_mb}m", f"--memory-swap={memory_mb}m"),
            *("-v", f"{model_dir}:/opt/ml/model:ro", "-e", f"SAGEMAKER_BIND_TO_PORT={port}"),
            *("-e", f"KENNEL_PRECISION={precision}", image, "serve"),
        ],
        check=True,
        capture_output=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        answer = wait_ready(f"{base}/ping", f"{base}/invocations", jpeg, started, timeout_s=120)
        stats = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return answer | {"memory_usage": stats}
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=f"kennel-serve:{os.environ.get('KENNEL_TAG', 'local')}")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results: dict = {"image": args.image, "load_start": os.getloadavg(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="kennel-cold-") as tmp:
        work = Path(tmp)
        jpegs = make_jpegs(4)
        paths = [work / f"image-{i}.jpg" for i in range(len(jpegs))]
        for path, jpeg in zip(paths, jpegs, strict=True):
            path.write_bytes(jpeg)
        _, model_dir, _ = standins.make_model(work, paths)
        for rep in range(args.reps):
            for memory_mb in MEMORY_MB:
                for precision in ("int8", "fp32"):
                    run = first_prediction(args.image, model_dir, memory_mb, precision, jpegs[0])
                    run |= {"memory_mb": memory_mb, "requested": precision, "rep": rep}
                    print(json.dumps(run), flush=True)
                    results["runs"].append(run)
    results["load_end"] = os.getloadavg()
    summary = {}
    for memory_mb in MEMORY_MB:
        for precision in ("int8", "fp32"):
            times = [
                r["first_prediction_s"]
                for r in results["runs"]
                if r["memory_mb"] == memory_mb and r["requested"] == precision
            ]
            summary[f"{memory_mb} {precision}"] = [min(times), statistics.median(times), max(times)]
    results["summary"] = summary
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
