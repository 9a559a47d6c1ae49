"""Model directories and images for the serving tests, made here with torch and Pillow.

The models follow docs/model-format.md: a tiny CNN for the behaviour tests (fast), and torchvision's resnet18
with random weights and 5 classes for parity, exported with torch.onnx as the training image does.
"""

import io
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from fastapi.testclient import TestClient
from kennel_serve.app import create_app
from kennel_serve.codecs import open_image
from kennel_serve.model import ModelManifest
from kennel_serve.settings import Settings
from kennel_train.preprocessing import Preprocessing
from kennel_train.synthetic import draw_image
from PIL import Image

from tests.conftest import free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
TINY_LABELS = ["001.cat", "002.dog", "003.fox"]
TINY_PREPROCESSING = Preprocessing(resize=40, crop=32).to_manifest()
PARITY_LABELS = [f"{i:03d}.breed_{i}" for i in range(1, 6)]
PARITY_PREPROCESSING = Preprocessing(resize=256, crop=224).to_manifest()


class TinyNet(torch.nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.head = torch.nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def write_model_dir(
    path: Path, model: torch.nn.Module, labels: list[str], preprocessing: dict, size: int
) -> Path:
    """A model directory as docs/model-format.md describes it."""
    path.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    torch.onnx.export(
        model,
        (torch.zeros(2, 3, size, size),),
        str(path / "model.onnx"),
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,
    )
    manifest = {
        "format": "kennel-model",
        "format_version": 1,
        "models": {"fp32": "model.onnx"},
        "input": {"name": "input", "layout": "NCHW", "dtype": "float32"},
        "output": {"name": "logits", "kind": "logits"},
        "labels": labels,
        "preprocessing": preprocessing,
        "architecture": {"backbone": type(model).__name__, "head": "linear", "num_classes": len(labels)},
        "a_future_key": "readers ignore unknown keys",
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    torch.save(model.state_dict(), path / "model.pth")
    return path


def torch_probabilities(model: torch.nn.Module, preprocessing: dict, image_bytes: bytes) -> np.ndarray:
    """The reference: torchvision's eval transform on the PIL image, then the PyTorch model and softmax."""
    return torch.softmax(torch.from_numpy(torch_logits(model, preprocessing, image_bytes)), dim=0).numpy()


def torch_logits(model: torch.nn.Module, preprocessing: dict, image_bytes: bytes) -> np.ndarray:
    """The PyTorch model's output row for one image, after the training package's evaluation transform on
    the full decode."""
    transform = Preprocessing.from_manifest(preprocessing).transform()
    tensor = transform(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
    with torch.inference_mode():
        return model.eval()(tensor.unsqueeze(0))[0].numpy()


@pytest.fixture(scope="session")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return TinyNet(len(TINY_LABELS)).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("tiny"), tiny_model, TINY_LABELS, TINY_PREPROCESSING, 32)


@pytest.fixture(scope="session")
def parity_model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torchvision.models.resnet18(num_classes=len(PARITY_LABELS)).eval()


@pytest.fixture(scope="session")
def parity_model_dir(tmp_path_factory, parity_model) -> Path:
    path = tmp_path_factory.mktemp("resnet18")
    return write_model_dir(path, parity_model, PARITY_LABELS, PARITY_PREPROCESSING, 224)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def as_decoded(model_dir: Path, image_bytes: bytes) -> bytes:
    """The pixels the server decodes from `image_bytes` for this model (a JPEG over twice its resize is
    decoded at reduced scale), as a lossless PNG for torchvision's eval transform."""
    least_size = ModelManifest.read(model_dir).preprocessing.least_decode_size
    return encode(open_image(image_bytes, 10**9, least_size), "PNG")


@pytest.fixture(scope="session")
def images() -> dict[str, bytes]:
    """Test pictures in the shapes and modes clients send: landscape and portrait JPEGs (odd sizes, so that
    resize truncation and crop rounding matter), a grayscale JPEG, an RGBA PNG and a palette PNG."""
    rng = random.Random(7)
    base = [draw_image(label, 5, 320, rng) for label in range(5)]
    return {
        "landscape.jpg": encode(base[0].crop((0, 0, 317, 211)), "JPEG", quality=90),
        "portrait.jpg": encode(base[1].crop((3, 0, 190, 301)), "JPEG", quality=85),
        "square.jpg": encode(base[2].resize((224, 224)), "JPEG"),
        "gray.jpg": encode(base[3].convert("L").crop((0, 0, 257, 300)), "JPEG"),
        "rgba.png": encode(base[4].convert("RGBA").crop((10, 10, 299, 250)), "PNG"),
        "palette.png": encode(base[0].convert("P").crop((0, 0, 100, 60)), "PNG"),
    }


def png_header(width: int, height: int) -> bytes:
    """A grey PNG that declares `width` x `height` and ends a few bytes into its pixel data: Pillow opens it
    (reading the header only) but cannot decode it, so a request of these answers 400 bad_image if, and
    only if, the server tries to decode one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + struct.pack(">I", 1000) + b"IDAT" + bytes(16)


@contextmanager
def serving(model_dir: Path, wait: bool = True, **overrides: object) -> Iterator[TestClient]:
    """A TestClient over create_app with settings for `model_dir`; waits until the load has finished."""
    settings = Settings.from_env({}, **{"model_dir": model_dir, "cpus": 2, **overrides})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        if wait:
            wait_until_loaded(client)
        yield client


def wait_until_loaded(client: TestClient, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/ping").json().get("status") == "loading":
        if time.monotonic() > deadline:
            pytest.fail(f"the model did not finish loading within {timeout:.0f} s")
        time.sleep(0.02)


@pytest.fixture
def tiny_client(tiny_model_dir) -> Iterator[TestClient]:
    with serving(tiny_model_dir) as client:
        yield client


def assert_error(response, status: int, kind: str) -> dict:
    """The stable error shape: status, type, message and request id, and nothing that looks like a trace."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status
    assert body["type"] == kind
    assert body["error"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


SERVE = [sys.executable, "-c", "from kennel_serve.cli import main; main()"]


def serve_environment(model_dir: Path, tmp_path: Path, port: int, **environ: str) -> dict[str, str]:
    """The environment for `SERVE` on the host: this checkout's packages, the model, the port, and
    `environ` on top."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "containers" / "serve"), str(ROOT), os.environ.get("PYTHONPATH", "")]
        ),
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "TMPDIR": str(tmp_path),
        **environ,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # serve sets it up itself
    return env


def load_pids(metrics: str) -> list[int]:
    """The workers with a model load sample in a scrape (one per live worker), in order."""
    return sorted(int(pid) for pid in re.findall(r'^kennel_model_load_seconds\{pid="(\d+)"\}', metrics, re.M))


@contextmanager
def serve_process(
    model_dir: Path, tmp_path: Path, status: int | None = 0, **environ: str
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`serve` for real on the host (uvicorn, uvloop and httptools, as in the image) on a free port; yields
    the process and its base URL once /ping answers 200; on leaving, SIGTERM must end it with `status`."""
    port = free_port()
    server = subprocess.Popen(
        SERVE,
        env=serve_environment(model_dir, tmp_path, port, **environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/ping", timeout=120, ok=lambda r: r.status_code == 200)
        yield server, base
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert status is None or server.returncode == status, stderr.decode(errors="replace")[-3000:]
