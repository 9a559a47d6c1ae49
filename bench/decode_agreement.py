"""Decode agreement: predictions after reduced-scale JPEG decoding (the serving image's path) against the
training image's own evaluation transform on the full decode, on photo stand-ins at phone sizes.

    .venv/bin/python -m bench.decode_agreement --out bench/results/decode.json   # bench.report reads it
    .venv/bin/python -m bench.decode_agreement --photos 40 --out /tmp/decode.json  # a quick look

No trained weights can be downloaded here, and a random-weights network is no judge: its top-1 is a near
tie that any change flips, or the same class for every picture. So the classifier is made here: a ResNet
(random convolution weights, batch-norm statistics calibrated on photo stand-ins) with a linear head
fitted on its features to tell apart the subject colours of `photos.photo` (CLASSES classes). Agreement is
top-1 of the reduced decode = top-1 of the full decode through the training image's `eval_transform`.
"""

import argparse
import io
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from kennel_serve.codecs import open_image
from kennel_serve.model import Preprocessing
from kennel_train.config import TrainConfig
from kennel_train.data import eval_transform
from kennel_train.model import build_model
from kennel_train.preprocessing import for_config
from PIL import Image
from torch import nn

from bench import photos
from kennel_common.model_format import DECODE_MARGIN

CLASSES = 4
# Phone photos of about 2, 3, 5.6 and 12 MP, landscape and portrait, and a downscaled upload (0.8 MP).
SIZES = ((1024, 768), (1632, 1224), (1224, 1632), (2048, 1536), (2736, 2052), (4032, 3024), (3024, 4032))
MARGINS = (1.0, 1.5, DECODE_MARGIN)
# The classifier learns from photos big enough that its input has a downscaled photo's statistics.
TRAIN_SIZE = (1024, 768)
NO_LIMIT = 2**40


def preprocessing() -> Preprocessing:
    """The manifest preprocessing the training image writes for its defaults (resize 256, crop 224)."""
    return Preprocessing.from_manifest(for_config(TrainConfig(data=".")).to_manifest())


def reference_transform():
    return eval_transform(TrainConfig(data="."))


def hue(label: int, seed: int) -> float:
    """A class's subject colour, with a little spread inside the class."""
    return (label + np.random.default_rng(seed).uniform(-0.25, 0.25)) / CLASSES % 1.0


def make_classifier(backbone: str = "resnet18", per_class: int = 24, seed: int = 0) -> nn.Module:
    """A `backbone`'s stem and first stage (random weights, batch-norm statistics calibrated on photo
    stand-ins), global pooling, and a linear head fitted to the subject colours (see the module docstring).
    """
    torch.manual_seed(seed)
    net = build_model(backbone, CLASSES)
    features = nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    transform = reference_transform()
    labels = [label for label in range(CLASSES) for _ in range(per_class)]
    batch = torch.stack(
        [
            transform(photos.photo(seed * 100_000 + i, *TRAIN_SIZE, hue(label, i)))
            for i, label in enumerate(labels)
        ]
    )
    for module in features.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    with torch.no_grad():
        features.train()(batch)
        pooled = features.eval()(batch)
    head = nn.Linear(pooled.shape[1], CLASSES)
    targets = torch.tensor(labels)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=200)

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = nn.functional.cross_entropy(head(pooled), targets) + 1e-3 * head.weight.square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    return nn.Sequential(features, head).eval()


def sample_photos(count: int, sizes=SIZES, seed: int = 1) -> list[tuple[int, bytes]]:
    """(label, JPEG bytes) for `count` photos cycling through `sizes` and the classes."""
    out = []
    for i in range(count):
        width, height = sizes[i % len(sizes)]
        label = i % CLASSES
        image = photos.photo(seed * 100_000 + i, width, height, hue(label, seed * 100_000 + i))
        out.append((label, photos.jpeg(image)))
    return out


def decode_reduced(data: bytes, margin: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The serving image's path: open_image with the manifest's least decode size, then preprocessing."""
    pre = preprocessing()
    image = open_image(data, NO_LIMIT, partial(pre.least_decode_size, margin=margin))
    return pre(image), image.size


def probabilities(model: nn.Module, batch: list[np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(np.stack(batch))), dim=1).numpy()


def agreement(model: nn.Module, samples: list[tuple[int, bytes]], margins=MARGINS) -> dict:
    """Per margin: top-1 agreement with the full decode, the largest probability difference, the decoded
    sizes, and decode + preprocessing time per image (one thread); and the reference's accuracy."""
    transform = reference_transform()
    labels = np.array([label for label, _ in samples])
    reference, seconds = [], {"full": 0.0}
    for _, data in samples:
        started = time.thread_time()
        tensor = transform(Image.open(io.BytesIO(data)).convert("RGB"))
        seconds["full"] += time.thread_time() - started
        reference.append(tensor.numpy())
    reference = probabilities(model, reference)
    result = {
        "photos": len(samples),
        "sizes": sorted({Image.open(io.BytesIO(d)).size for _, d in samples}),
        "jpeg_bytes": {"min": min(len(d) for _, d in samples), "max": max(len(d) for _, d in samples)},
        "reference_accuracy": float((reference.argmax(1) == labels).mean()),
        "reference_classes": len(set(reference.argmax(1).tolist())),
        "full_ms": 1000 * seconds["full"] / len(samples),
        "margins": {},
    }
    for margin in margins:
        arrays, decoded, started = [], set(), time.thread_time()
        for _, data in samples:
            array, size = decode_reduced(data, margin)
            arrays.append(array)
            decoded.add(size)
        elapsed = time.thread_time() - started
        reduced = probabilities(model, arrays)
        result["margins"][str(margin)] = {
            "top1_agreement": float((reduced.argmax(1) == reference.argmax(1)).mean()),
            "max_probability_difference": float(np.abs(reduced - reference).max()),
            "decoded_sizes": sorted(decoded),
            "ms": 1000 * elapsed / len(samples),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = make_classifier(args.backbone)
    result = agreement(model, sample_photos(args.photos))
    result |= {"backbone": args.backbone, "classes": CLASSES, "default_margin": DECODE_MARGIN}
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
