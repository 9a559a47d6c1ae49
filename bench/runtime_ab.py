"""ONNX Runtime against OpenVINO on the benchmark's model files, in one process, interleaved: images per
second at batch 1 (a lone request) and batch 8 (under load), 2 threads each, fp32 and INT8.

    python3.11 -m venv .kennel/openvino
    .kennel/openvino/bin/pip install openvino==2026.4.1 onnxruntime==1.32.0 numpy==2.4.6
    .kennel/openvino/bin/python -m bench.runtime_ab --model-dir MODEL_DIR --out bench/results/runtime_ab.json

ONNX Runtime runs with the serving image's settings (intra-op threads 2, spinning off, no memory pattern);
OpenVINO compiles the same ONNX file for the CPU with 2 inference threads and its latency hint, once with its
defaults (on a CPU with bf16 instructions that means bf16 arithmetic) and once held to f32
(INFERENCE_PRECISION_HINT), the precision the serving image's parity with PyTorch asks for. Each also reports
its largest logit difference from ONNX Runtime. The serving image keeps ONNX Runtime: docs/benchmarks.md has
the figures and the reasons.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino as ov

THREADS = 2


def ort_runner(path: Path, name: str):
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_mem_pattern = False
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {name: batch})[0]


def openvino_runner(path: Path, name: str, **hints: str):
    config = {"INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY", **hints}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    return lambda batch: request.infer({name: batch})[compiled.output(0)]


def images_per_second(run, batch: np.ndarray, seconds: float) -> float:
    run(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    manifest = json.loads((args.model_dir / "manifest.json").read_text())
    name = manifest["input"]["name"]
    rng = np.random.default_rng(0)
    rows: dict[str, list[float]] = {}
    differences: dict[str, float] = {}
    for precision, filename in manifest["models"].items():
        path = args.model_dir / filename
        runners = {
            "onnxruntime": ort_runner(path, name),
            "openvino": openvino_runner(path, name),
            "openvino f32": openvino_runner(path, name, INFERENCE_PRECISION_HINT="f32"),
        }
        for batch_size in (1, 8):
            batch = rng.standard_normal((batch_size, 3, 224, 224), dtype=np.float32)
            reference = runners["onnxruntime"](batch)
            for runtime in ("openvino", "openvino f32"):
                difference = np.abs(runners[runtime](batch) - reference).max()
                differences[f"{precision} b{batch_size} {runtime}"] = float(difference)
            for _ in range(args.reps):
                for runtime, run in runners.items():
                    key = f"{precision} b{batch_size} {runtime}"
                    rows.setdefault(key, []).append(images_per_second(run, batch, args.seconds))
    for key, values in rows.items():
        print(f"{key:<28} {statistics.median(values):6.1f} img/s  ({min(values):.1f}-{max(values):.1f})")
    print(f"largest |logit difference|, OpenVINO against ONNX Runtime: {differences}")
    if args.out:
        versions = {"onnxruntime": ort.__version__, "openvino": ov.get_version()}
        result = {"versions": versions, "seconds": args.seconds, "images_per_second": rows,
                  "largest_logit_difference": differences}  # fmt: skip
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
