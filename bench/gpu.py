"""GPU figures: the trainer's images/s with AMP and channels_last against fp32 (ResNet-50, 224 px, synthetic
data), and the throughput of the serving image's GPU variant; writes JSON that bench.report folds into
docs/benchmarks.md. On a machine without an NVIDIA GPU it says so and exits 0.

    .venv/bin/python -m bench.gpu --out bench/results/gpu.json && .venv/bin/python -m bench.report

Needs what bench/serve.py needs (Docker, wrk, bench/requirements.txt in .venv) plus the NVIDIA driver and
the NVIDIA container toolkit (`docker run --gpus all` works). The training runs use bench/train_throughput.py
on the host's torch; the serving runs build kennel-serve:gpu-$KENNEL_TAG with
`--build-arg REQUIREMENTS=requirements-gpu.txt` and serve the benchmark's fp32 ResNet-50 on every GPU,
with no CPU limit, at concurrency 16 and 64, with the 500x375 JPEG and the 12 MP photo stand-in.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TRAINING_MODES = {"AMP + channels_last": ("auto", "auto"), "fp32": ("off", "off")}
SERVING_CONCURRENCY = (16, 64)


def gpu_names() -> list[str]:
    """The NVIDIA GPUs nvidia-smi lists; none when it is missing or fails (no driver, no GPU)."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def training(images: int, batch_size: int) -> dict[str, Any]:
    """bench/train_throughput.py once per mode; the trainer's best images/s of each."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, (amp, channels_last) in TRAINING_MODES.items():
            out = Path(tmp) / "training.json"
            command = [sys.executable, "-m", "bench.train_throughput", "--backbone", "resnet50",
                       "--size", "224", "--images", str(images), "--batch-size", str(batch_size),
                       "--amp", amp, "--channels-last", channels_last, "--out", str(out)]  # fmt: skip
            subprocess.run(command, check=True, cwd=ROOT)
            figures = json.loads(out.read_text())
            results[mode] = {
                "images_per_s": figures["best"]["trainer"],
                "amp_dtype": figures["amp_dtype"],
                "channels_last": figures["channels_last_used"],
                "device": figures["device"],
            }
    results["speedup"] = results["AMP + channels_last"]["images_per_s"] / results["fp32"]["images_per_s"]
    return results


def serving(seconds: float) -> dict[str, Any]:
    """The GPU variant of the serving image, built here, on every GPU, measured with wrk."""
    import docker

    import images
    from bench import photos, serve, standins

    client = docker.from_env()
    tag = f"kennel-serve:gpu-{os.environ.get('KENNEL_TAG', 'local')}"
    started = time.perf_counter()
    client.images.build(
        path=str(images.CONTEXTS["serve"]),
        dockerfile=str(images.DOCKERFILES["serve"].relative_to(images.CONTEXTS["serve"])),
        tag=tag,
        buildargs={"BASE_IMAGE": images.base_image(), "REQUIREMENTS": "requirements-gpu.txt"},
        rm=True,
    )
    result: dict[str, Any] = {
        "image": tag,
        "image_bytes": client.images.get(tag).attrs["Size"],
        "build_s": time.perf_counter() - started,
        "points": {},
    }
    with tempfile.TemporaryDirectory(prefix="kennel-gpu-") as tmp:
        work = Path(tmp)
        small = serve.make_jpegs(1)[0]
        bodies = {"500x375": work / "small.jpg", "12 MP": work / "large.jpg"}
        bodies["500x375"].write_bytes(small)
        bodies["12 MP"].write_bytes(photos.jpeg(photos.photo(1, 4032, 3024)))
        _, model_dir, _ = standins.make_model(work, [bodies["500x375"]])
        server = serve.Server("Kennel GPU fp32", "kennel", {"KENNEL_PRECISION": "fp32"})
        gpus = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        running = serve.start_kennel(client, tag, model_dir, server, nano_cpus=None, device_requests=gpus)
        try:
            result |= serve.wait_ready(running, small, time.perf_counter())
            result["served_on"] = "cpu" if "serving on the CPU" in running.logs() else "cuda"
            for name, body in bodies.items():
                serve.warm_up(running.predict_url, body)
                for concurrency in SERVING_CONCURRENCY:
                    point = serve.run_load(running.predict_url, body, concurrency, seconds)
                    result["points"][f"{name} c{concurrency}"] = point
                    print(f"  serving {name} c={concurrency}: {point}", flush=True)
            result["memory_bytes"] = running.memory_bytes()
        finally:
            running.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "gpu.json")
    parser.add_argument("--images", type=int, default=1280, help="training images per epoch x 6/5")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0, help="per serving point")
    args = parser.parse_args()
    names = gpu_names()
    if not names:
        print(
            "bench/gpu.py: no NVIDIA GPU here (nvidia-smi lists none): nothing to measure, nothing written."
        )
        return 0
    print(f"bench/gpu.py: {len(names)} GPU(s): {', '.join(names)}", flush=True)
    results = {"gpus": names, "cpus": os.cpu_count(), "training": training(args.images, args.batch_size)}
    results["serving"] = serving(args.seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
