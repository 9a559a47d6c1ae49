"""Writes the model directory (docs/model-format.md): model.onnx, manifest.json (built by
kennel_common.model_format.build_manifest), model.pth and metric_definitions.json, after checking that ONNX
Runtime and PyTorch agree."""

import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from torch import nn

from kennel_common.model_format import INPUT_NAME, OUTPUT_NAME
from kennel_train.metrics import METRIC_DEFINITIONS_FILE

INT8_FILE = "model.int8.onnx"  # written by kennel_train.quantize when its guard passes
PARITY_TOLERANCE = 1e-4
PARITY_IMAGES = 8  # real images the parity check runs on


class ParityError(RuntimeError):
    """ONNX Runtime's probabilities differ from PyTorch's by more than the tolerance."""


def export_onnx(model: nn.Module, path: Path, image_size: int) -> None:
    """float32 NCHW input `input`, output `logits`, with a dynamic batch axis."""
    model = model.float().to(memory_format=torch.contiguous_format).eval()
    example = torch.zeros(2, 3, image_size, image_size)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,
    )


def check_parity(model: nn.Module, onnx_path: Path, images: torch.Tensor) -> float:
    """The largest absolute difference between the two runtimes' softmax probabilities on `images`;
    raises ParityError above PARITY_TOLERANCE."""
    model = model.float().eval()
    with torch.inference_mode():
        expected = torch.softmax(model(images), dim=1).numpy()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    actual = shifted / shifted.sum(axis=1, keepdims=True)
    difference = float(np.abs(actual - expected).max())
    if not difference <= PARITY_TOLERANCE:
        raise ParityError(
            f"ONNX Runtime and PyTorch disagree: max |p_onnx - p_torch| = {difference:.3g} on "
            f"{len(images)} validation images (tolerance {PARITY_TOLERANCE})"
        )
    return difference


def write_model_dir(
    model_dir: Path, model: nn.Module, manifest: dict[str, Any], parity_images: torch.Tensor
) -> float:
    """Writes every file into a staging folder beside `model_dir`, checks parity, then moves the files
    in, so a failed export leaves no half-written model behind. Returns the parity difference."""
    model = model.cpu().float().eval()
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    torch.save(model.state_dict(), staging / "model.pth")
    export_onnx(model, staging / "model.onnx", parity_images.shape[-1])
    difference = check_parity(model, staging / "model.onnx", parity_images.cpu().float())
    manifest = {
        **manifest,
        "parity": {"max_abs_diff_probabilities": difference, "images": len(parity_images)},
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    definitions = resources.files("kennel_train").joinpath(METRIC_DEFINITIONS_FILE).read_text()
    (staging / METRIC_DEFINITIONS_FILE).write_text(definitions)
    # An INT8 model from an earlier export belongs to other weights: quantization writes a new one or none.
    (model_dir / INT8_FILE).unlink(missing_ok=True)
    for item in staging.iterdir():
        os.replace(item, model_dir / item.name)
    staging.rmdir()
    return difference
