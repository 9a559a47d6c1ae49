"""How an image becomes the network's input at evaluation, said once: the manifest's `preprocessing` block
is written from it, and evaluation, the parity check and INT8 calibration run it.

    pre = for_config(TrainConfig(image_size=224, resize=256))
    tensor = pre.transform()(pre.open(path))          # what the validation accuracy was measured on
    manifest["preprocessing"] = pre.to_manifest()     # what the serving image reproduces

The description includes the decode: a JPEG much larger than the resize target decodes at a reduced scale
(libjpeg's 1/2, 1/4 or 1/8, Pillow's `draft`) that keeps at least `jpeg_decode_margin` times the target,
as the serving image decodes it. Evaluating on the same decode makes the reported accuracy the accuracy of
what is served (docs/model-format.md, "Decoding").
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError
from torchvision import transforms

from kennel_train.config import TrainConfig

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic")
# The serving image's margin (kennel_serve.model.DECODE_MARGIN), chosen there by measurement
# (docs/benchmarks.md, "JPEG decoding at reduced scale"). Manifests that do not say it are read with it.
JPEG_DECODE_MARGIN = 2.0


@dataclass(frozen=True)
class Preprocessing:
    """`resize`: the shorter side's length (int), or an exact (height, width); `crop`: a centre crop or
    None; `mean`, `std`: per channel on pixels in [0, 1]; `jpeg_decode_margin`: see the module's text,
    None for a full-size decode."""

    resize: int | tuple[int, int]
    crop: int | None
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    jpeg_decode_margin: float | None = JPEG_DECODE_MARGIN

    @classmethod
    def from_manifest(cls, block: dict[str, Any]) -> "Preprocessing":
        """A manifest's `preprocessing` block (docs/model-format.md); one written before the decode was
        recorded reads as the serving image decodes it."""
        resize = block["resize"]
        margin = block.get("jpeg_decode_margin", JPEG_DECODE_MARGIN)
        interpolation = block.get("interpolation", "bilinear")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
        return cls(
            resize=int(resize) if isinstance(resize, int) else (int(resize[0]), int(resize[1])),
            crop=None if block.get("crop") is None else int(block["crop"]),
            interpolation=interpolation,
            mean=tuple(float(value) for value in block["mean"]),
            std=tuple(float(value) for value in block["std"]),
            jpeg_decode_margin=None if margin is None else float(margin),
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

    def transform(self) -> transforms.Compose:
        """A decoded RGB image to the float32 CHW tensor the network takes."""
        steps = [
            transforms.Resize(
                self.resize if isinstance(self.resize, int) else list(self.resize),
                transforms.InterpolationMode(self.interpolation),
            )
        ]
        if self.crop is not None:
            steps.append(transforms.CenterCrop(self.crop))
        steps += [transforms.ToTensor(), transforms.Normalize(self.mean, self.std)]
        return transforms.Compose(steps)

    def least_decode_size(self, width: int, height: int) -> tuple[int, int]:
        """The smallest (width, height), same aspect, a `width` x `height` JPEG may decode at: the margin
        times what the resize keeps, never more than the image itself."""
        if self.jpeg_decode_margin is None:
            return width, height
        if isinstance(self.resize, int):
            factor = self.jpeg_decode_margin * self.resize / min(width, height)
        else:
            factor = self.jpeg_decode_margin * max(self.resize[0] / height, self.resize[1] / width)
        if factor >= 1:
            return width, height
        return math.ceil(width * factor), math.ceil(height * factor)

    def open(self, path: str) -> Image.Image | None:
        """The image at `path` decoded as this description says, as RGB, or None if it is unreadable."""
        return open_rgb(path, self.least_decode_size)


def for_config(config: TrainConfig) -> Preprocessing:
    """The training image's evaluation: the shorter side to RESIZE, then a centre crop of IMAGE_SIZE."""
    return Preprocessing(resize=config.eval_resize, crop=config.image_size)


def open_rgb(
    path: str, least_size: Callable[[int, int], tuple[int, int]] | None = None
) -> Image.Image | None:
    """The image as RGB (grayscale, CMYK, palette and RGBA inputs included), or None if unreadable. With
    `least_size` ((width, height) -> the smallest size needed), a JPEG decodes at the smallest of libjpeg's
    reduced scales that is at least that size; without it, and for other formats, at full size."""
    try:
        with Image.open(path) as image:
            if least_size is not None and image.format == "JPEG":
                image.draft(None, least_size(*image.size))  # never below the size asked for
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
