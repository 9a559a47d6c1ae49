"""The INT8 model: ONNX Runtime's static quantization of model.onnx, calibrated on training images, and the
accuracy guard that decides whether it may be served.

    quantize_model_dir(Path("model"), sample_images(Path("data/train"), 64, seed=0), Path("data/valid"))

The INT8 file is QDQ (QuantizeLinear/DequantizeLinear pairs around each quantized op), which ONNX Runtime's
CPU kernels fuse into integer convolutions and matrix multiplications; its input and output stay float32,
so the serving image runs it with the same code as the fp32 model.
"""

import json
import logging
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from torchvision import datasets

from kennel_train.export import INT8_FILE
from kennel_train.preprocessing import Preprocessing

log = logging.getLogger(__name__)

METHOD = (
    "onnxruntime static quantization, QDQ format, int8 per-channel weights (7-bit range), "
    "uint8 per-tensor activations, MinMax calibration"
)
MIN_AGREEMENT = 0.99  # share of validation images whose INT8 top-1 equals the fp32 top-1
MAX_ACCURACY_DROP = 0.01  # fp32 accuracy minus INT8 accuracy on the validation split
BATCH = 16
# Calibration keeps every intermediate tensor of up to this many images before folding them into the
# running ranges (about 100 MB per image for ResNet-50 at 224 px).
CALIBRATION_STRIDE = 8


class QuantizationError(RuntimeError):
    """The model directory cannot be quantized as asked (no readable calibration image, unknown classes)."""


def sample_images(folder: Path, count: int, seed: int) -> list[Path]:
    """A seeded sample of up to `count` image files under `folder` (an ImageFolder split or any tree)."""
    extensions = datasets.folder.IMG_EXTENSIONS
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(extensions))
    return sorted(random.Random(seed).sample(files, min(count, len(files))))


def _batches(paths: list[Path], preprocessing: Preprocessing) -> Iterator[np.ndarray]:
    """Readable images as float32 NCHW batches; unreadable files are skipped."""
    transform = preprocessing.transform()
    tensors = []
    for path in paths:
        image = preprocessing.open(str(path))
        if image is not None:
            tensors.append(transform(image))
        if len(tensors) == BATCH:
            yield torch.stack(tensors).numpy()
            tensors = []
    if tensors:
        yield torch.stack(tensors).numpy()


class _CalibrationImages(CalibrationDataReader):
    """The calibration images, decoded once, handed to ONNX Runtime's calibrator one at a time. The
    calibrator asks for them in strides (set_range) and folds each stride into running ranges, so it never
    holds more than one stride's intermediate tensors."""

    def __init__(self, input_name: str, paths: list[Path], preprocessing: Preprocessing) -> None:
        self.input_name = input_name
        self.images = [image[None] for batch in _batches(paths, preprocessing) for image in batch]
        self.set_range(0, len(self.images))

    def __len__(self) -> int:
        return len(self.images)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.pending = iter(self.images[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self.pending, None)
        return None if image is None else {self.input_name: image}

    @property
    def stride(self) -> int:
        """The largest divisor of the image count up to CALIBRATION_STRIDE (ONNX Runtime needs one)."""
        return max(d for d in range(1, CALIBRATION_STRIDE + 1) if len(self.images) % d == 0)


def _quantize(
    fp32: Path, int8: Path, input_name: str, paths: list[Path], preprocessing: Preprocessing
) -> int:
    """Writes the INT8 model to `int8`; returns the number of images it was calibrated on."""
    reader = _CalibrationImages(input_name, paths, preprocessing)
    if not len(reader):
        raise QuantizationError(f"none of the {len(paths)} calibration images could be read")
    with tempfile.TemporaryDirectory(prefix="kennel-quantize-") as scratch:
        # Shape inference and graph optimisation first (BatchNorm folded into Conv), as ONNX Runtime
        # recommends: the ranges are then measured on the tensors the fused kernels really see.
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared),
            str(int8),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # 7-bit weights: CPUs without VNNI saturate 8-bit products in 16 bits, so the guard's figures
            # would not hold on every endpoint instance type; VNNI CPUs run it at the same speed.
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibStridedMinMax": reader.stride},
        )
    return len(reader)


def _labelled_images(folder: Path, labels: list[str]) -> list[tuple[Path, int]]:
    """An ImageFolder split's images with their index in the manifest's labels."""
    split = datasets.ImageFolder(str(folder))
    unknown = sorted(set(split.classes) - set(labels))
    if unknown:
        raise QuantizationError(f"{folder} has classes the model does not know: {', '.join(unknown[:5])}")
    return [(Path(path), labels.index(split.classes[target])) for path, target in split.samples]


def _top1(session: onnxruntime.InferenceSession, batch: np.ndarray) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: batch})[0].argmax(axis=1)


def guard_figures(
    fp32: Path, int8: Path, validation: list[tuple[Path, int]], preprocessing: Preprocessing
) -> dict[str, Any]:
    """Top-1 agreement between the two models and each one's accuracy, on the labelled images."""
    sessions = [
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]) for path in (fp32, int8)
    ]
    readable, labels = [], []
    for path, label in validation:
        if preprocessing.open(str(path)) is not None:
            readable.append(path)
            labels.append(label)
    predictions = [[], []]
    for batch in _batches(readable, preprocessing):
        for kept, session in zip(predictions, sessions, strict=True):
            kept.extend(_top1(session, batch))
    fp32_top1, int8_top1, truth = (np.asarray(values) for values in (*predictions, labels))
    count = len(truth)
    agree = int((fp32_top1 == int8_top1).sum())
    fp32_correct, int8_correct = int((fp32_top1 == truth).sum()), int((int8_top1 == truth).sum())
    # Compared as counts: 0.8 - 0.79 is 0.010000000000000009 in floating point.
    passed = count > 0 and (
        agree >= MIN_AGREEMENT * count - 1e-9
        and fp32_correct - int8_correct <= MAX_ACCURACY_DROP * count + 1e-9
    )
    return {
        "validation_images": count,
        "agreement": agree / count if count else None,
        "fp32_accuracy": fp32_correct / count if count else None,
        "int8_accuracy": int8_correct / count if count else None,
        "min_agreement": MIN_AGREEMENT,
        "max_accuracy_drop": MAX_ACCURACY_DROP,
        "passed": passed,
    }


def _failure_reason(figures: dict[str, Any]) -> str:
    if not figures["validation_images"]:
        return "the validation split has no readable image to check the INT8 model on"
    return (
        f"top-1 agreement with fp32 {figures['agreement']:.4f} (at least {MIN_AGREEMENT} needed), "
        f"accuracy {figures['fp32_accuracy']:.4f} fp32 vs {figures['int8_accuracy']:.4f} int8 "
        f"(a drop of at most {MAX_ACCURACY_DROP} allowed) on {figures['validation_images']} validation images"
    )


def _write_json(path: Path, value: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(temporary, path)


def quantize_model_dir(
    model_dir: Path,
    calibration: list[Path],
    validation_dir: Path | None,
    *,
    guard: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Quantizes the model directory's fp32 model, calibrated on `calibration` (decoded and preprocessed as
    the manifest says), and checks it on `validation_dir` (an ImageFolder split) when one is given.

    With `guard`, model.int8.onnx is written and named in the manifest (`models.int8`, plus a `quantization`
    block with the figures) only if the guard passes; otherwise nothing in `model_dir` changes. Without
    `guard` it is written whatever the figures. Returns the `quantization` block plus `written` and
    `reason` (why it was not written, or None). `seed` is recorded: the one the calibration sample used.
    """
    if guard and validation_dir is None:
        reason = "no validation split to check the INT8 model against"
        return {"method": METHOD, "guarded": guard, "written": False, "reason": reason}
    manifest_path = model_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    preprocessing = Preprocessing.from_manifest(manifest["preprocessing"])
    fp32 = model_dir / manifest["models"]["fp32"]
    staged = model_dir / f".{INT8_FILE}.tmp"
    try:
        images = _quantize(fp32, staged, manifest["input"]["name"], calibration, preprocessing)
        block: dict[str, Any] = {
            "method": METHOD,
            "onnxruntime": onnxruntime.__version__,
            "calibration_images": images,
            "calibration_seed": seed,
            "guarded": guard,
        }
        if validation_dir is not None:
            validation = _labelled_images(validation_dir, list(manifest["labels"]))
            block |= guard_figures(fp32, staged, validation, preprocessing)
        reason = _failure_reason(block) if guard and not block["passed"] else None
        if reason is None:
            os.replace(staged, model_dir / INT8_FILE)
            manifest["models"]["int8"] = INT8_FILE
            manifest["quantization"] = block
            _write_json(manifest_path, manifest)
    finally:
        staged.unlink(missing_ok=True)
    return {**block, "written": reason is None, "reason": reason}
