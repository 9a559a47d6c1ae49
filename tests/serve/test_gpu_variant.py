"""The serving image's GPU variant without a GPU: its pinned requirements resolve as a complete, consistent
set with pip's own resolver (a dry run against the package index: nothing is installed), they differ from
the CPU image's only by ONNX Runtime's build and CUDA's libraries, and a server that finds ONNX Runtime's
CUDA provider but no GPU serves on the CPU and says so. About 15 s, most of it pip reading the index."""

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
from kennel_serve.model import CUDA, ImageClassifier

SERVE = Path(__file__).resolve().parents[2] / "containers" / "serve"


def pins(path: Path) -> dict[str, str]:
    """name (normalised, extras dropped) -> version, for every `name==version` line."""
    found = {}
    for line in path.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line):
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[3]
    return found


def test_the_gpu_requirements_resolve_to_exactly_their_pins(tmp_path):
    report = tmp_path / "report.json"
    requirements = SERVE / "requirements-gpu.txt"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--only-binary", ":all:", "--report", str(report), "-r", str(requirements)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    resolved = {
        re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    gpu = pins(SERVE / "requirements-gpu.txt")
    assert resolved == gpu  # nothing unpinned pulled in, nothing pinned left out
    cpu = pins(SERVE / "requirements.txt")
    assert "onnxruntime" in cpu and "onnxruntime" not in gpu and "onnxruntime-gpu" in gpu
    assert {name: cpu[name] for name in cpu if name != "onnxruntime"} == {
        name: version for name, version in gpu.items() if name in cpu
    }
    assert all(name.startswith("nvidia-") for name in set(gpu) - set(cpu) - {"onnxruntime-gpu"})


def test_without_a_usable_gpu_the_cuda_build_falls_back_to_the_cpu(tiny_model_dir, monkeypatch, caplog):
    # The CPU build stands in for a CUDA build on a machine without a GPU: it reports the CUDA provider, and
    # ONNX Runtime itself then falls back to the CPU when the session is made.
    available = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, *available])
    with (
        caplog.at_level(logging.WARNING, logger="kennel_serve.model"),
        pytest.warns(UserWarning, match="CUDAExecutionProvider"),  # ONNX Runtime's own word on it
    ):
        classifier = ImageClassifier(tiny_model_dir, threads=2)
    assert classifier.device == "cpu"
    assert classifier.session.get_providers() == ["CPUExecutionProvider"]
    assert "no GPU is usable here: serving on the CPU" in caplog.text
