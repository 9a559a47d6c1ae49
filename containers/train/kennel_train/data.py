"""ImageFolder splits: checked before training starts, corrupt images skipped and counted."""

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision import datasets, transforms

from kennel_common.model_format import MEAN, STD
from kennel_train.config import TrainConfig
from kennel_train.dist import DistContext
from kennel_train.preprocessing import for_config, open_rgb

log = logging.getLogger(__name__)

SPLIT_NAMES = {"train": ("train",), "valid": ("valid", "validation", "val"), "test": ("test",)}


class DataError(ValueError):
    """The data cannot be trained on; raised before any training starts."""


@dataclass(frozen=True)
class Splits:
    train: Path
    valid: Path
    test: Path
    classes: tuple[str, ...]


def find_splits(config: TrainConfig) -> Splits:
    """The three split folders, checked: each exists, has the same classes, and no class is empty."""
    root = Path(config.data)
    chosen = {}
    for split, explicit in (
        ("train", config.train_dir),
        ("valid", config.valid_dir),
        ("test", config.test_dir),
    ):
        candidates = [Path(explicit)] if explicit else [root / name for name in SPLIT_NAMES[split]]
        found = next((path for path in candidates if path.is_dir()), None)
        if found is None:
            raise DataError(
                f"missing {split} split: none of {', '.join(str(p) for p in candidates)} is a folder "
                f"(expected ImageFolder splits train/ valid/ test/ under {root})"
            )
        chosen[split] = found
    classes = None
    for split, path in chosen.items():
        names = tuple(sorted(entry.name for entry in os.scandir(path) if entry.is_dir()))
        if not names:
            raise DataError(f"{split} split {path} has no class folders")
        empty = [name for name in names if not _has_image(path / name)]
        if empty:
            raise DataError(f"empty class in {split} split {path}: {', '.join(empty)} holds no images")
        if classes is None:
            classes = names
        elif names != classes:
            diff = sorted(set(names) ^ set(classes))
            raise DataError(f"{split} split {path} has other classes than train: {', '.join(diff[:10])}")
    if len(classes) < 2:
        raise DataError(f"need at least 2 classes, found {len(classes)} in {chosen['train']}")
    return Splits(train=chosen["train"], valid=chosen["valid"], test=chosen["test"], classes=classes)


def _has_image(folder: Path) -> bool:
    return any(
        name.lower().endswith(datasets.folder.IMG_EXTENSIONS)
        for _, _, files in os.walk(folder)
        for name in files
    )


def train_transform(config: TrainConfig) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(config.image_size, antialias=True),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )


def eval_transform(config: TrainConfig) -> transforms.Compose:
    """The evaluation transform of kennel_train.preprocessing, which the manifest describes."""
    return for_config(config).transform()


class SkippingImageFolder(Dataset):
    """An ImageFolder whose unreadable images yield None; `collate_skipping` drops and counts them.
    `open_image` decodes a path (None when unreadable): a full decode unless told otherwise."""

    def __init__(
        self,
        root: Path,
        classes: tuple[str, ...],
        transform: transforms.Compose,
        open_image: Callable[[str], Image.Image | None] = open_rgb,
    ) -> None:
        self.folder = datasets.ImageFolder(str(root))
        if tuple(self.folder.classes) != classes:
            raise DataError(f"{root}: classes differ from the train split")
        self.transform = transform
        self.open_image = open_image

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        path, label = self.folder.samples[index]
        image = self.open_image(path)
        if image is None:
            return None
        return self.transform(image), label


def collate_skipping(batch: list) -> tuple[torch.Tensor, torch.Tensor, int]:
    kept = [item for item in batch if item is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images, labels = zip(*kept, strict=True)
    return torch.stack(images), torch.tensor(labels), skipped


def worker_count(config: TrainConfig, dist: DistContext) -> int:
    if config.workers >= 0:
        return config.workers
    # The host's cores shared by its processes, one core each left for the training process itself.
    return min(8, max((os.cpu_count() or 1) // dist.local_world_size - 1, 0))


def make_loaders(config: TrainConfig, dist: DistContext, splits: Splits) -> dict[str, DataLoader]:
    """Train: shuffled, sharded with a DistributedSampler. Valid/test: every rank takes every
    world-size-th image, so counts are exact (no padding) and the reduced metrics are true ratios."""
    workers = worker_count(config, dist)
    common = {
        "batch_size": config.batch_size,
        "num_workers": workers,
        "collate_fn": collate_skipping,
        "pin_memory": dist.device.type == "cuda",
        "persistent_workers": workers > 0,
    }
    # Training decodes in full: a random crop may take a small part of a large photo.
    train_set = SkippingImageFolder(splits.train, splits.classes, train_transform(config))
    sampler = DistributedSampler(
        train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=config.seed
    )
    loaders = {"train": DataLoader(train_set, sampler=sampler, drop_last=False, **common)}
    # Evaluation decodes and transforms as the serving image does, so its accuracy is the served one.
    evaluation = for_config(config)
    for split in ("valid", "test"):
        dataset = SkippingImageFolder(
            getattr(splits, split), splits.classes, evaluation.transform(), evaluation.open
        )
        shard = Subset(dataset, range(dist.rank, len(dataset), dist.world_size))
        loaders[split] = DataLoader(shard, shuffle=False, **common)
    return loaders
