"""Serving benchmark: the serving image against the in-process ONNX Runtime ceiling, on this machine.

    PYTHONPATH=containers/serve:containers/train .venv/bin/python bench/serve.py     # resnet50, 20 s each
    PYTHONPATH=containers/serve:containers/train .venv/bin/python bench/serve.py --arch resnet18 --seconds 10

Needs the built image (`make build`) and ApacheBench (`ab`, Debian's apache2-utils). The model is a
torchvision backbone with random weights and 5 classes, exported and described by the training image's own
export code, so the served artifact is the one training writes. Results replace the "Serving" section of
docs/benchmarks.md. ab runs on the same cores as the server; its CPU use is reported, not subtracted.
"""

import argparse
import io
import json
import os
import random
import re
import resource
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import docker
import httpx
import numpy as np
import torch
import torchvision
from kennel_serve.model import ImageClassifier
from kennel_train.export import build_manifest, export_onnx
from kennel_train.synthetic import draw_image
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PREPROCESSING = {
    "resize": 256,
    "crop": 224,
    "interpolation": "bilinear",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
CONCURRENCY = (1, 4, 16)


def make_model_dir(path: Path, arch: str) -> Path:
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=5).eval()
    export_onnx(model, path / "model.onnx", 224)
    manifest = build_manifest([f"class_{i}" for i in range(5)], PREPROCESSING, {"backbone": arch}, {}, {})
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def make_jpeg() -> bytes:
    """An ImageNet-sized photo stand-in: 500x375, about 100 kB."""
    image = draw_image(2, 5, 500, random.Random(0)).crop((0, 0, 500, 375))
    noise = np.random.default_rng(0).integers(-40, 40, (375, 500, 3))
    image = Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def ceiling(
    model_dir: Path, jpeg: bytes, threads: int, seconds: float, batches: tuple[int, ...] = (1, 4, 8, 16)
) -> dict[int, float]:
    """Images per second in one process: decode, preprocess, one ONNX Runtime call per batch, softmax."""
    classifier = ImageClassifier(model_dir, threads)
    results = {}
    for batch in batches:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            arrays = [classifier.preprocess(Image.open(io.BytesIO(jpeg))) for _ in range(batch)]
            classifier.predict(np.stack(arrays))
            done += batch
        results[batch] = done / (time.perf_counter() - started)
    return results


def run_ab(url: str, body: Path, concurrency: int, seconds: float) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [
            "ab",
            "-q",
            "-k",
            "-t",
            str(seconds),
            "-n",
            "10000000",
            "-c",
            str(concurrency),
            "-p",
            str(body),
            "-T",
            "image/jpeg",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    percent = {int(m[0]): float(m[1]) for m in re.findall(r"^\s+(\d+)%\s+(\d+)", out, re.M)}
    return {
        "rps": float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1)),
        "p50": percent[50],
        "p99": percent[99],
        "failed": int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
        + int((re.search(r"Non-2xx responses:\s+(\d+)", out) or [0, 0])[1]),
        "ab_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    }


def start(client: docker.DockerClient, image: str, model_dir: Path, cpus: int):
    return client.containers.run(
        image,
        ["serve"],
        detach=True,
        name=f"kennel-serve-bench-{uuid.uuid4().hex[:8]}",
        volumes={str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}},
        ports={"8080/tcp": ("127.0.0.1", None)},
        nano_cpus=cpus * 10**9,
    )


def port_of(container) -> int:
    container.reload()
    return int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])


def cold_start(client, image: str, model_dir: Path, jpeg: bytes, cpus: int) -> tuple[float, float]:
    """Seconds from `docker run` to the first 200 on /ping and on /invocations."""
    started = time.perf_counter()
    container = start(client, image, model_dir, cpus)
    try:
        base = f"http://127.0.0.1:{port_of(container)}"
        ping = invocation = None
        while invocation is None:
            try:
                if ping is None and httpx.get(f"{base}/ping", timeout=2).status_code == 200:
                    ping = time.perf_counter() - started
                if ping is not None:
                    response = httpx.post(
                        f"{base}/invocations",
                        content=jpeg,
                        headers={"Content-Type": "image/jpeg"},
                        timeout=30,
                    )
                    if response.status_code == 200:
                        invocation = time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.01)
        return ping, invocation
    finally:
        container.remove(force=True)


def write_section(text: str) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    section = re.compile(r"^## Serving\n.*?(?=^## |\Z)", re.M | re.S)
    current = section.sub("", current).rstrip("\n") + "\n\n"
    path.write_text(current + text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--image", default="kennel-serve:local")
    parser.add_argument("--cold-runs", type=int, default=3)
    args = parser.parse_args()

    client = docker.from_env()
    load_before = os.getloadavg()[0]
    jpeg = make_jpeg()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_model_dir(Path(tmp), args.arch)
        body = Path(tmp) / "image.jpg"
        body.write_bytes(jpeg)
        best = ceiling(model_dir, jpeg, args.cpus, args.seconds / 2)
        print("in-process ceiling (img/s by batch):", {k: round(v, 1) for k, v in best.items()}, flush=True)
        container = start(client, args.image, model_dir, args.cpus)
        try:
            url = f"http://127.0.0.1:{port_of(container)}/invocations"
            while True:
                try:
                    if httpx.get(url.replace("invocations", "ping"), timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            run_ab(url, body, 4, 5)  # warm-up
            served = {}
            best_batch = max(best, key=best.get)
            for c in CONCURRENCY:
                served[c] = run_ab(url, body, c, args.seconds)
                # The machine is shared: the ceiling is measured again right after each point, and the ratio
                # uses that neighbour, so that load from elsewhere affects both sides alike.
                container.pause()
                served[c]["ceiling"] = ceiling(model_dir, jpeg, args.cpus, args.seconds / 2, (best_batch,))[
                    best_batch
                ]
                container.unpause()
                print(f"c={c}:", served[c], flush=True)
        finally:
            container.remove(force=True)
        colds = [cold_start(client, args.image, model_dir, jpeg, args.cpus) for _ in range(args.cold_runs)]
    image = client.images.get(args.image)
    base_name = (ROOT / ".kennel" / "base-image").read_text().strip()
    base = client.images.get(base_name)
    ceiling_rps = max(best.values())
    rows = "\n".join(
        f"| {c} | {r['rps']:.1f} | {r['ceiling']:.1f} | {r['rps'] / r['ceiling']:.2f} | {r['p50']:.0f} "
        f"| {r['p99']:.0f} | {r['failed']} | {r['ab_cpu_s']:.1f} |"
        for c, r in served.items()
    )
    ping_s = statistics.median(p for p, _ in colds)
    invoke_s = statistics.median(i for _, i in colds)
    text = f"""## Serving

`{
        " ".join(
            [
                "PYTHONPATH=containers/serve:containers/train .venv/bin/python bench/serve.py",
                f"--arch {args.arch} --seconds {args.seconds:g}",
            ]
        )
    }` on this machine ({args.cpus} cores,
container limited with `--cpus={args.cpus}`; ApacheBench on the same cores, keep-alive, one 500x375 JPEG of
{len(jpeg) // 1000} kB). Model: torchvision {args.arch}, random weights, 5 classes, exported by the training
image's export code; preprocessing resize 256, crop 224.

In-process ceiling (same model, same preprocessing, {args.cpus} threads, one process, decode + preprocess +
one ONNX Runtime call per batch): {", ".join(f"batch {k}: {v:.1f} img/s" for k, v in best.items())};
best {ceiling_rps:.1f} img/s. The machine is shared with other work (1-minute load average {load_before:.1f}
at the start, {os.getloadavg()[0]:.1f} at the end), so the ceiling at the best batch is measured again right
after each point, with the server paused, and each ratio uses that neighbouring ceiling.

| concurrency | req/s | ceiling img/s | ratio | p50 ms | p99 ms | failed | ab CPU s |
|---|---|---|---|---|---|---|---|
{rows}

Cold start (median of {args.cold_runs}, image already local): `docker run` to first 200 on /ping
{ping_s:.2f} s, to first 200 on /invocations {invoke_s:.2f} s.

Image: {image.attrs["Size"] / 1e6:.0f} MB, {(image.attrs["Size"] - base.attrs["Size"]) / 1e6:.0f} MB over its
base `{base_name}` ({base.attrs["Size"] / 1e6:.0f} MB).
"""
    write_section(text)
    print(text)


if __name__ == "__main__":
    main()
