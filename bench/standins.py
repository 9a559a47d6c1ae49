"""What the serving benchmarks share: the benchmark model, the photo stand-ins of the dog-breed set, and the
clock to a server's first prediction. Used by bench/serve.py, bench/serverless_cold.py (which runs without
the benchmark's own requirements), bench/gpu.py and bench/memory_ab.py."""

import io
import random
import time
from importlib import import_module
from pathlib import Path

import httpx
import numpy as np
import torch
import torchvision
from kennel_train.export import write_model_dir
from kennel_train.preprocessing import Preprocessing
from kennel_train.synthetic import draw_image
from PIL import Image

from kennel_common.model_format import build_manifest

# ResNet-50 with the dog-breed set's 133 classes, preprocessed as the training image evaluates.
CLASSES = 133
PREPROCESSING = Preprocessing(resize=256, crop=224)


def make_model(work: Path, jpegs: list[Path]) -> tuple[torch.nn.Module, Path, dict | None]:
    """ResNet-50 (133 classes, seed 0, random weights) as a model directory, and its INT8 model when the
    training image's quantizer imports here (guard off: random weights make its agreement meaningless)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=CLASSES).eval()
    labels = [f"class_{i:03d}" for i in range(CLASSES)]
    manifest = build_manifest(
        labels, PREPROCESSING.to_manifest(), {"backbone": "resnet50"}, {}, {"data": "random weights"}
    )
    parity = torch.stack([PREPROCESSING.transform()(PREPROCESSING.open(str(path))) for path in jpegs[:4]])
    model_dir = work / "model"
    write_model_dir(model_dir, model, manifest, parity)
    try:
        quantize = import_module("kennel_train.quantize")
    except ImportError:
        return model, model_dir, None
    return model, model_dir, quantize.quantize_model_dir(model_dir, jpegs, None, guard=False)


def make_jpegs(count: int) -> list[bytes]:
    """Photo stand-ins of the dog-breed set's typical size: 500x375, about 100 kB each, deterministic."""
    jpegs = []
    for seed in range(count):
        image = draw_image(seed % 5, 5, 500, random.Random(seed)).crop((0, 0, 500, 375))
        noise = np.random.default_rng(seed).integers(-40, 40, (375, 500, 3))
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    return jpegs


def wait_ready(ping_url: str, predict_url: str, jpeg: bytes, started: float, timeout_s: float) -> dict:
    """Seconds from `started` to the first 200 on /ping and to the first 200 prediction, and the precision
    the server answered with."""
    ping = None
    while time.perf_counter() - started < timeout_s:
        try:
            if ping is None and httpx.get(ping_url, timeout=2).status_code == 200:
                ping = time.perf_counter() - started
            if ping is not None:
                response = httpx.post(
                    predict_url, content=jpeg, headers={"Content-Type": "image/jpeg"}, timeout=60
                )
                if response.status_code == 200:
                    return {
                        "ping_s": ping,
                        "first_prediction_s": time.perf_counter() - started,
                        "precision": response.headers.get("X-Kennel-Precision"),
                    }
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{predict_url} gave no prediction within {timeout_s} s")


def workspace(work: Path, model_dir: Path | None = None) -> tuple[list[bytes], Path, Path]:
    """What a serving run needs in `work`: 16 photo stand-ins, the first also as work/image.jpg (ab's
    body), and a model directory: `model_dir` when given, else the stand-in model made in `work`."""
    jpegs = make_jpegs(16)
    body = work / "image.jpg"
    body.write_bytes(jpegs[0])
    return jpegs, body, model_dir or make_model(work, [body])[1]
