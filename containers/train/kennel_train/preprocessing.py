"""How an image becomes the network's input at evaluation, said once: the manifest's `preprocessing` block
is written from it, and evaluation, the parity check and INT8 calibration run it.

    pre = for_config(TrainConfig(image_size=224, resize=256))
    tensor = pre.transform()(pre.open(path))          # what the validation accuracy was measured on
    manifest["preprocessing"] = pre.to_manifest()     # what the serving image reproduces

The description and its decode rule are kennel_common.model_format's, which the serving image reads: a
JPEG much larger than the resize target decodes at a reduced scale (libjpeg's 1/2, 1/4 or 1/8, Pillow's
`draft`) that keeps at least `jpeg_decode_margin` times the target. Evaluating on the same decode makes the
reported accuracy the accuracy of what is served (docs/model-format.md, "Decoding").
"""

from collections.abc import Callable

from PIL import Image, UnidentifiedImageError
from torchvision import transforms

from kennel_common import model_format
from kennel_train.config import TrainConfig


class Preprocessing(model_format.Preprocessing):
    """The manifest's preprocessing description, run with torchvision."""

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
