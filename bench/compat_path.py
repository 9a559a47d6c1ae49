"""The path from the compatibility build to the default one, measured on one seed model: its handler script
served by kennel-serve-compat (PyTorch, eager, one request at a time), the same weights through
`convert-seed` served by kennel-serve (ONNX Runtime fp32, micro-batched), and their INT8 model. For each
step: the image and model sizes, seconds from `docker run` to the first prediction, wrk's req/s, p50 and p99
at concurrency 1 and 4 (500x375 JPEGs), the container's CPU time per request (the figure that a busy shared
machine disturbs least), and its memory after; writes raw results as JSON and prints the table that
containers/serve/README.md quotes.

    KENNEL_TAG=dev .venv/bin/python -m images build serve serve-compat
    KENNEL_TAG=dev .venv/bin/python -m bench.compat_path --out bench/results/compat_path.json

The weights are the seed's network with random weights (seed 0): right for speed and size, meaningless for
accuracy, so the INT8 model is quantized with its guard off, as bench/serve.py does; with real weights,
`convert-seed --images dogImages` writes it only if it agrees with fp32 (docs/model-format.md). Each server
gets two CPUs (`--cpus=2`) on the host network and is started afresh in each repetition; the repetitions
interleave the three servers.
"""

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import docker
import torch
from kennel_train import convert_seed, quantize

import images
from bench.serve import Server, run_load, start_kennel, wait_ready, warm_up
from bench.standins import make_jpegs

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "serve" / "seed_inference.py"  # the handler tests/serve/test_seed_handler.py serves
CONCURRENCY = (1, 4)
FP32 = {"KENNEL_PRECISION": "fp32"}


def seed_weights(path: Path) -> None:
    spec = importlib.util.spec_from_file_location("seed_inference", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    torch.manual_seed(0)
    torch.save(script.Net().state_dict(), path)


def model_dirs(work: Path, jpegs: list[Path]) -> dict[str, Path]:
    """The three steps' model directories: the script with model.pth, convert-seed's, and that plus INT8."""
    script_dir = work / "script"
    (script_dir / "code").mkdir(parents=True)
    shutil.copy(SCRIPT, script_dir / "code" / "inference.py")
    seed_weights(script_dir / "model.pth")
    labels = work / "labels.txt"
    labels.write_text("".join(f"{i:03d}.breed_{i}\n" for i in range(1, 134)))
    fp32_dir, int8_dir = work / "fp32", work / "int8"
    command = [str(script_dir / "model.pth"), "--labels", str(labels), "--out", str(fp32_dir)]
    assert convert_seed.main([*command, "--images", str(jpegs[0].parent)]) == 0
    shutil.copytree(fp32_dir, int8_dir)
    quantize.quantize_model_dir(int8_dir, jpegs, None, guard=False)
    return {"script": script_dir, "fp32": fp32_dir, "int8": int8_dir}


def file_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk's time per concurrency")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    client = docker.from_env()
    compat, serve_image = images.local_tag("serve-compat"), images.local_tag("serve")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "jpegs").mkdir()
        paths = []
        for index, jpeg in enumerate(make_jpegs(16)):
            paths.append(work / "jpegs" / f"{index:02d}.jpg")
            paths[-1].write_bytes(jpeg)
        dirs = model_dirs(work, paths)
        steps = {
            "script in the compatibility build": (compat, dirs["script"], "model.pth", {}),
            "convert-seed, default build, fp32": (serve_image, dirs["fp32"], "model.onnx", FP32),
            "convert-seed, default build, INT8": (serve_image, dirs["int8"], "model.int8.onnx", {}),
        }
        results = {
            "load_start": os.getloadavg(),
            "steps": {
                name: {
                    "image": image,
                    "image_mb": client.images.get(image).attrs["Size"] / 1e6,
                    "model_mb": file_mb(model_dir / model_file),
                    "runs": [],
                }
                for name, (image, model_dir, model_file, _) in steps.items()
            },
        }
        for rep in range(args.reps):
            for name, (image, model_dir, _, environment) in steps.items():
                started = time.perf_counter()
                running = start_kennel(client, image, model_dir, Server(name, "kennel", environment))
                try:
                    run = wait_ready(running, paths[0].read_bytes(), started)
                    warm_up(running.predict_url, paths[0], levels=CONCURRENCY)
                    run["points"] = {}
                    for concurrency in CONCURRENCY:
                        cpu = running.cpu_seconds()
                        point = run_load(running.predict_url, paths[0], concurrency, args.seconds)
                        point["cpu_ms_per_request"] = (running.cpu_seconds() - cpu) * 1000 / point["requests"]
                        run["points"][concurrency] = point
                    run["memory_mb"] = running.memory_bytes() / 1e6
                finally:
                    running.stop()
                results["steps"][name]["runs"].append(run)
                print(f"rep {rep + 1}/{args.reps} {name}: {json.dumps(run)}", flush=True)
        results["load_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))


def table(results: dict) -> str:
    """Medians over the repetitions."""
    columns = {
        "first prediction s": (lambda run: run["first_prediction_s"], ".1f"),
        "req/s c=1": (lambda run: run["points"][1]["rps"], ".1f"),
        "p50 ms c=1": (lambda run: run["points"][1]["p50"], ".0f"),
        "server CPU ms per request c=1": (lambda run: run["points"][1]["cpu_ms_per_request"], ".0f"),
        "req/s c=4": (lambda run: run["points"][4]["rps"], ".1f"),
        "p99 ms c=4": (lambda run: run["points"][4]["p99"], ".0f"),
        "memory MB": (lambda run: run["memory_mb"], ".0f"),
    }
    names = ["step", "image MB", "model MB", *columns]
    lines = ["| " + " | ".join(names) + " |", "|---" * len(names) + "|"]
    for name, step in results["steps"].items():
        cells = [name, f"{step['image_mb']:.0f}", f"{step['model_mb']:.0f}"]
        cells += [f"{statistics.median(map(pick, step['runs'])):{form}}" for pick, form in columns.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
