"""The classifier a model directory describes (docs/model-format.md; its manifest is read by
kennel_common.model_format). No web imports: this module turns pixels into the network's scores and
probabilities and is tested on its own.

Preprocessing reproduces torchvision's eval transform on a PIL image, step by step and in the same order,
because parity with the PyTorch model (1e-4 on probabilities) depends on every rounding choice:
``Image.convert("RGB")`` -> ``Resize`` -> ``CenterCrop`` -> ``ToTensor`` -> ``Normalize``.
"""

import contextlib
import ctypes
import logging
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from kennel_common import model_format

log = logging.getLogger(__name__)
# PIL's filters for the manifest's `interpolation` names.
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
CUDA = "CUDAExecutionProvider"


def execution_providers() -> list[str]:
    """CUDA first when this ONNX Runtime build has it (the image's GPU variant), then the CPU."""
    if CUDA not in ort.get_available_providers():
        return ["CPUExecutionProvider"]
    with contextlib.suppress(Exception):  # CUDA's libraries from the nvidia-* wheels, when they are there
        ort.preload_dlls()
    return [CUDA, "CPUExecutionProvider"]


def _return_freed_memory() -> None:
    """glibc keeps the heap that ONNX Runtime freed after building the session (about 1.5x the model file)
    as resident memory; malloc_trim gives it back. Nothing to do where there is no glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class ModelLoadError(RuntimeError):
    """The model directory cannot be served; the message says what is wrong and where."""


class Preprocessing(model_format.Preprocessing):
    """The manifest's preprocessing description (kennel_common.model_format), run with numpy."""

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One decoded image to a float32 CHW array, exactly as torchvision's eval transform would."""
        image = image.convert("RGB")
        width, height = image.size
        if isinstance(self.resize, int):
            # torchvision's Resize(int): the shorter side becomes `resize`, the longer one is truncated.
            short, long = sorted((width, height))
            new_short, new_long = self.resize, int(self.resize * long / short)
            size = (new_short, new_long) if width <= height else (new_long, new_short)
        else:
            size = (self.resize[1], self.resize[0])
        if size != image.size:
            image = image.resize(size, RESAMPLING[self.interpolation])
        if self.crop is not None:
            image = _center_crop(image, self.crop)
        pixels = np.asarray(image, dtype=np.float32) / np.float32(255)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return ((pixels - mean) / std).transpose(2, 0, 1)


def _center_crop(image: Image.Image, crop: int) -> Image.Image:
    width, height = image.size
    if crop > width or crop > height:
        # torchvision pads with zeros first, splitting the padding this way, then crops the centre.
        padded = Image.new("RGB", (max(width, crop), max(height, crop)))
        padded.paste(image, ((max(crop - width, 0)) // 2, (max(crop - height, 0)) // 2))
        image, (width, height) = padded, padded.size
    top = round((height - crop) / 2.0)  # Python rounds half to even, as torchvision does
    left = round((width - crop) / 2.0)
    return image.crop((left, top, left + crop, top + crop))


class ModelManifest(model_format.ModelManifest):
    """The manifest (kennel_common.model_format), with serving's preprocessing and its choice of model."""

    PREPROCESSING = Preprocessing

    def choose(self, precision: str) -> str:
        """The precision to serve: `auto` takes int8 when the manifest has it, else fp32."""
        if precision == "auto":
            return "int8" if "int8" in self.models else "fp32"
        if precision not in self.models:
            raise ModelLoadError(
                f"KENNEL_PRECISION={precision}, but the manifest has no {precision} model "
                f"(it has {', '.join(sorted(self.models))})"
            )
        return precision

    @classmethod
    def read(cls, model_dir: Path) -> "ModelManifest":
        try:
            return super().read(model_dir)
        except model_format.ManifestError as err:
            raise ModelLoadError(str(err)) from None


class ImageClassifier:
    """An ONNX classifier and its manifest: preprocessed images in, class probabilities out. `precision`
    picks the manifest's model: `auto` (int8 when there is one), `int8` or `fp32`."""

    def __init__(self, model_dir: Path, threads: int, precision: str = "auto") -> None:
        started = time.monotonic()
        self.model_dir = model_dir
        self.manifest = ModelManifest.read(model_dir)
        self.precision = self.manifest.choose(precision)
        model_file = self.manifest.models[self.precision]
        options = ort.SessionOptions()
        # One batch runs at a time (the micro-batcher's thread), so all threads go to intra-op parallelism;
        # no spinning, so idle ONNX Runtime threads leave the CPUs to the image decoders.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # No memory pattern: ONNX Runtime would plan and keep one block of activations per batch shape, and
        # the micro-batcher forms every size from 1 to 16. Measured in the serving process with the fp32
        # ResNet-50 after 25 s at concurrency 16 (anonymous memory): 376 MB with patterns, 288 MB without
        # (both with the malloc_trim below); docs/benchmarks.md has the throughput.
        options.enable_mem_pattern = False
        path = model_dir / model_file
        providers = execution_providers()
        if not path.is_file():
            raise ModelLoadError(f"the manifest names {model_file}, which is not in {model_dir}")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # ONNX Runtime raises its own untyped errors for corrupt or invalid models
            raise ModelLoadError(f"ONNX Runtime cannot load {path}: {err}") from None
        self.device = "cuda" if self.session.get_providers()[0] == CUDA else "cpu"
        if CUDA in providers and self.device != "cuda":
            log.warning(
                "ONNX Runtime's CUDA build is installed but no GPU is usable here: serving on the CPU"
            )
        classes = self.session.get_outputs()[0].shape[-1]
        if isinstance(classes, int) and classes != len(self.manifest.labels):
            raise ModelLoadError(
                f"{path} has {classes} outputs but the manifest has {len(self.manifest.labels)} labels"
            )
        pre = self.manifest.preprocessing
        if pre.crop is not None:
            height = width = pre.crop
        else:
            height, width = (pre.resize, pre.resize) if isinstance(pre.resize, int) else pre.resize
        try:
            # A warm-up call, so that the first request does not pay for ONNX Runtime's lazy initialisation.
            self.predict(np.zeros((1, 3, height, width), dtype=np.float32))
        except Exception as err:
            raise ModelLoadError(f"{path} fails on a {height}x{width} input: {err}") from None
        _return_freed_memory()
        self.load_seconds = time.monotonic() - started

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.manifest.preprocessing(image)

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """A float32 NCHW batch to the network's (N, classes) output as it is: logits, unless the manifest's
        `output.kind` says the network ends in softmax."""
        (outputs,) = self.session.run(None, {self.manifest.input_name: batch})
        return outputs

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """`scores` rows to class probabilities (softmax of logits)."""
        if self.manifest.output_kind == "probabilities":
            return scores
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """A float32 NCHW batch to an (N, classes) float32 array of probabilities."""
        return self.probabilities(self.scores(batch))
