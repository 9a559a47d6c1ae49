"""Data checks before training, corrupt images skipped and counted, the synthetic set."""

import hashlib
from pathlib import Path

import pytest
import torch
from kennel_train.config import TrainConfig
from kennel_train.data import DataError, SkippingImageFolder, collate_skipping, eval_transform, find_splits
from kennel_train.synthetic import write_dataset
from torch.utils.data import DataLoader


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root, classes=5, per_class=5, size=32, seed=1)
    return root


def test_synthetic_set_layout_and_determinism(dataset, tmp_path):
    splits = find_splits(TrainConfig(data=str(dataset)))
    assert len(splits.classes) == 5
    assert [p.name for p in (splits.train, splits.valid, splits.test)] == ["train", "valid", "test"]
    write_dataset(tmp_path, classes=5, per_class=5, size=32, seed=1)

    def digest(root: Path) -> str:
        files = sorted(root.rglob("*.jpg"))
        return hashlib.sha256(
            b"".join(f.relative_to(root).as_posix().encode() + f.read_bytes() for f in files)
        ).hexdigest()

    assert digest(tmp_path) == digest(dataset)


def test_missing_split_is_a_clear_error(dataset, tmp_path):
    (tmp_path / "train").symlink_to(dataset / "train")
    (tmp_path / "valid").symlink_to(dataset / "valid")
    with pytest.raises(DataError, match="missing test split"):
        find_splits(TrainConfig(data=str(tmp_path)))


def test_empty_class_is_a_clear_error(dataset, tmp_path):
    for split in ("train", "valid", "test"):
        if split != "valid":
            (tmp_path / split).symlink_to(dataset / split)
    for name in (dataset / "valid").iterdir():
        target = tmp_path / "valid" / name.name
        target.mkdir(parents=True)
        if not name.name.startswith("003"):
            for image in name.iterdir():
                (target / image.name).write_bytes(image.read_bytes())
    with pytest.raises(DataError, match=r"empty class in valid split .*003\."):
        find_splits(TrainConfig(data=str(tmp_path)))


def test_corrupt_images_are_skipped_and_counted(dataset, tmp_path):
    for source in (dataset / "valid").rglob("*.jpg"):
        target = tmp_path / source.relative_to(dataset / "valid")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    images = sorted(tmp_path.rglob("*.jpg"))
    images[0].write_bytes(b"not a jpeg")
    images[1].write_bytes(images[1].read_bytes()[:40])  # truncated
    classes = tuple(sorted(p.name for p in tmp_path.iterdir()))
    folder = SkippingImageFolder(tmp_path, classes, eval_transform(TrainConfig(image_size=32)))
    seen = skipped = 0
    for batch, labels, bad in DataLoader(folder, batch_size=4, collate_fn=collate_skipping):
        assert batch.shape[1:] == (3, 32, 32) and len(batch) == len(labels)
        seen += len(labels)
        skipped += bad
    assert (seen, skipped) == (len(images) - 2, 2)


def test_a_batch_of_only_corrupt_images_is_empty():
    images, labels, skipped = collate_skipping([None, None])
    assert (len(images), len(labels), skipped) == (0, 0, 2)
    assert labels.dtype == torch.long
