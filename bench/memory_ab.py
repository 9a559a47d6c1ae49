"""Serving memory and throughput, two builds of the serving image side by side: Kennel fp32 at concurrency 16
(the 500x375 JPEG), alternating A B A B ..., each container started afresh; writes JSON.

    .venv/bin/python -m bench.memory_ab --before kennel-serve:before --after kennel-serve:local
    # writes bench/results/memory_ab.json

Paired rounds seconds apart, so that a shared machine's load falls on both builds alike.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import docker

from bench import serve, standins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "memory_ab.json")
    args = parser.parse_args()
    client = docker.from_env()
    server = serve.Server("Kennel fp32", "kennel", {"KENNEL_PRECISION": "fp32"})
    results = {"images": {"before": args.before, "after": args.after}, "seconds": args.seconds, "runs": []}
    with tempfile.TemporaryDirectory(prefix="kennel-memory-") as tmp:
        work = Path(tmp)
        jpeg = serve.make_jpegs(1)[0]
        body = work / "image.jpg"
        body.write_bytes(jpeg)
        _, model_dir, _ = standins.make_model(work, [body])
        for round_ in range(args.rounds):
            for name in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
                running = serve.start_kennel(client, results["images"][name], model_dir, server)
                try:
                    serve.wait_ready(running, jpeg, time.perf_counter())
                    serve.warm_up(running.predict_url, body)
                    point = serve.run_load(running.predict_url, body, 16, args.seconds)
                    point["memory_bytes"] = running.memory_bytes()
                finally:
                    running.stop()
                results["runs"].append({"build": name, "round": round_, **point})
                print(name, point, flush=True)
    for name in ("before", "after"):
        runs = [run for run in results["runs"] if run["build"] == name]
        results[name] = {
            "rps": statistics.median(run["rps"] for run in runs),
            "memory_mb": statistics.median(run["memory_bytes"] / 1e6 for run in runs),
        }
    print(json.dumps({name: results[name] for name in ("before", "after")}))
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
