"""The model directory (docs/model-format.md) as code, the one description the training image writes from
and the serving image and bench read with: the manifest's constants, its writing and reading, and the
preprocessing description with the JPEG decode rule. Standard library only, so the numpy-only serving image
carries it too; training adds its torchvision transform (kennel_train.preprocessing), serving its numpy one
(kennel_serve.model).

    manifest = build_manifest(labels, Preprocessing(resize=256, crop=224).to_manifest(), ...)  # training
    manifest = ModelManifest.read(model_dir)                                                  # serving
    manifest.preprocessing.least_decode_size(4032, 3024)   # (683, 512): the smallest decode it allows
"""

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

FORMAT = "kennel-model"
FORMAT_VERSION = 2  # 2 added `default_response`; version 1 manifests read as `top_k`
MANIFEST_FILE = "manifest.json"
# The network's input and output as training exports them and the manifest names them.
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# What /invocations answers: the most likely labels with probabilities, or the network's output row as is.
RESPONSE_SHAPES = ("top_k", "scores")
# PIL's filters of these names, as torchvision uses them for PIL images.
INTERPOLATIONS = ("bilinear", "bicubic")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# A reduced-scale JPEG decode keeps at least this many times the resize target on the side(s) the resize
# fixes, so the resize still averages several decoded pixels into each output pixel. Chosen by measurement
# (docs/benchmarks.md, "JPEG decoding at reduced scale"): 2x keeps top-1 and probabilities closest to the
# full decode of the margins measured, and costs little more time than 1x. The manifest's
# `preprocessing.jpeg_decode_margin` says it per model (training evaluated on it); this is the value for
# manifests written before it was recorded.
DECODE_MARGIN = 2.0


class ManifestError(ValueError):
    """The manifest cannot be read; the message says what is wrong and where."""


@dataclass(frozen=True)
class Preprocessing:
    """How a decoded image becomes the network's input (torchvision's eval transform: resize, centre crop,
    normalise). `resize`: the shorter side's length (int), or an exact (height, width); `crop`: a centre
    crop or None; `mean`, `std`: per channel on pixels in [0, 1]; `jpeg_decode_margin`: how large JPEGs
    decode (`least_decode_size`), None for a full-size decode."""

    resize: int | tuple[int, int]
    crop: int | None
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    jpeg_decode_margin: float | None = DECODE_MARGIN

    @classmethod
    def from_manifest(cls, block: dict[str, Any]) -> Self:
        """A manifest's `preprocessing` block; one written before the decode was recorded reads with
        DECODE_MARGIN. Raises KeyError, TypeError, ValueError or ManifestError when it is malformed."""
        resize = block["resize"]
        return cls(
            resize=int(resize) if isinstance(resize, int) else (int(resize[0]), int(resize[1])),
            crop=None if block.get("crop") is None else int(block["crop"]),
            interpolation=_choice(block.get("interpolation", "bilinear"), INTERPOLATIONS, "interpolation"),
            mean=tuple(float(value) for value in block["mean"]),
            std=tuple(float(value) for value in block["std"]),
            jpeg_decode_margin=_margin(block.get("jpeg_decode_margin", DECODE_MARGIN)),
        )

    def to_manifest(self) -> dict[str, Any]:
        return {
            "resize": self.resize if isinstance(self.resize, int) else list(self.resize),
            "crop": self.crop,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
            "jpeg_decode_margin": self.jpeg_decode_margin,
        }

    def least_decode_size(self, width: int, height: int, margin: float | None = None) -> tuple[int, int]:
        """The smallest (width, height), same aspect, that a `width` x `height` JPEG may be decoded at:
        `margin` (`jpeg_decode_margin` unless given) times what the resize keeps, never more than the image
        itself."""
        margin = self.jpeg_decode_margin if margin is None else margin
        if margin is None:
            return width, height
        if isinstance(self.resize, int):
            factor = margin * self.resize / min(width, height)
        else:
            factor = margin * max(self.resize[0] / height, self.resize[1] / width)
        if factor >= 1:
            return width, height
        return math.ceil(width * factor), math.ceil(height * factor)


def _margin(value: object) -> float | None:
    if value is None:
        return None
    margin = value if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")
    if not margin > 0:  # NaN fails too
        raise ValueError(f"preprocessing.jpeg_decode_margin {value!r} is not a positive number or null")
    return float(margin)


def _choice(value: str, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        raise ManifestError(f"manifest {field} {value!r} is not one of {sorted(allowed)}")
    return value


def build_manifest(
    labels: list[str],
    preprocessing: dict[str, Any],
    architecture: dict[str, Any],
    metrics: dict[str, Any],
    provenance: dict[str, Any],
    default_response: str = "top_k",
) -> dict[str, Any]:
    """The manifest of a model directory whose fp32 network is model.onnx; `default_response` is what the
    serving image answers when a request does not choose: `top_k` labels with probabilities, or `scores`,
    the network's output row per image."""
    if default_response not in RESPONSE_SHAPES:
        raise ValueError(f"default_response {default_response!r} is not one of {RESPONSE_SHAPES}")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "models": {"fp32": "model.onnx"},
        "input": {"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "kind": "logits"},
        "default_response": default_response,
        "labels": list(labels),
        "preprocessing": preprocessing,
        "architecture": architecture,
        "metrics": metrics,
        "provenance": {"created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **provenance},
    }


@dataclass(frozen=True)
class ModelManifest:
    """What a reader needs of a model directory's manifest; unknown keys are ignored. `preprocessing` is
    an instance of the class's PREPROCESSING, which a reader may extend with its transform."""

    PREPROCESSING = Preprocessing

    models: dict[str, str]  # precision -> file in the model directory
    input_name: str
    output_kind: str
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    quantization: dict | None  # how the int8 model was made and the accuracy guard's figures
    default_response: str = "top_k"  # one of RESPONSE_SHAPES, when the request does not choose

    @classmethod
    def read(cls, model_dir: Path) -> Self:
        """The manifest in `model_dir`; raises ManifestError, whose message names the file and the fault."""
        path = model_dir / MANIFEST_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(f"no {MANIFEST_FILE} in the model directory {model_dir}") from None
        except (OSError, ValueError) as err:
            raise ManifestError(f"cannot read {path}: {err}") from None
        try:
            if data.get("format") != FORMAT:
                raise ManifestError(f"{path} is not a {FORMAT} manifest (format={data.get('format')!r})")
            if data["format_version"] > FORMAT_VERSION:
                raise ManifestError(
                    f"{path} has format_version {data['format_version']}; "
                    f"this server reads up to {FORMAT_VERSION}"
                )
            models = {str(key): str(value) for key, value in data["models"].items()}
            if "fp32" not in models:
                raise KeyError("models.fp32")
            return cls(
                models=models,
                input_name=data["input"]["name"],
                output_kind=data["output"]["kind"],
                labels=tuple(data["labels"]),
                preprocessing=cls.PREPROCESSING.from_manifest(data["preprocessing"]),
                quantization=data.get("quantization"),
                default_response=_choice(
                    data.get("default_response", "top_k"), RESPONSE_SHAPES, "default_response"
                ),
            )
        except ManifestError:
            raise
        except (KeyError, TypeError, IndexError, ValueError) as err:
            raise ManifestError(f"{path} is missing or has a malformed field: {err!r}") from None
