"""`data push`: an ImageFolder data set (train/ valid/ test/) checked, then uploaded to the training channel.

    python -m deploy data push --stack my-stack.toml ~/dogImages

The layout is checked before anything is sent: the three splits, the same class folders in each, and
every file an image Pillow can open (its header is parsed and the file structure verified; pixels are
not decoded). A bad data set names each problem and uploads nothing.

Files go to s3://BUCKET/PREFIX/data/CHANNEL/SPLIT/CLASS/FILE, the prefix a training job reads, through
s3transfer (parallel, multipart above `TRANSFER.multipart_threshold`). Like `aws s3 sync`, a file is
skipped when an object of the same size and the same ETag is already there; the ETag is computed
locally the way S3 computes it for an unencrypted or SSE-S3 object: the MD5 of the file, or for a
multipart upload the MD5 of the parts' MD5s and "-<parts>", with the part size s3transfer uses. An object
that was encrypted with KMS, or uploaded by another tool with another part size, is sent again:
the rule never skips a file whose content differs, at worst it uploads one that did not need it.
"""

import hashlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from boto3.s3.transfer import TransferConfig, create_transfer_manager
from PIL import Image
from s3transfer.subscribers import BaseSubscriber
from s3transfer.utils import ChunksizeAdjuster
from tqdm import tqdm

from deploy import s3
from deploy.aws import DeployError, Run

SPLITS = ("train", "valid", "test")
# torchvision's ImageFolder extensions: what the trainer will read.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
TRANSFER = TransferConfig(
    multipart_threshold=8 * 1024**2, multipart_chunksize=8 * 1024**2, max_concurrency=10
)
MAX_LISTED = 10


@dataclass(frozen=True)
class LocalFile:
    path: Path
    key: str  # relative to the channel prefix: SPLIT/CLASS/FILE
    size: int


@dataclass
class DataSet:
    root: Path
    classes: tuple[str, ...]
    files: list[LocalFile]
    ignored: list[Path] = field(default_factory=list)


def _problem_list(problems: list[str]) -> str:
    shown = problems[:MAX_LISTED]
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return "\n  " + "\n  ".join(shown) + more


def check(root: Path) -> DataSet:
    """The data set's files, or a DeployError listing everything wrong with its layout."""
    root = root.expanduser()
    if not root.is_dir():
        raise DeployError(f"{root} is not a folder: pass the folder that holds train/ valid/ test/")
    problems: list[str] = []
    missing = [split for split in SPLITS if not (root / split).is_dir()]
    if missing:
        raise DeployError(
            f"{root} is not an ImageFolder data set: missing {', '.join(s + '/' for s in missing)}"
            f" (expected {'/ '.join(SPLITS)}/ each with one folder per class)"
        )
    per_split = {split: sorted(p.name for p in (root / split).iterdir() if p.is_dir()) for split in SPLITS}
    classes = tuple(per_split["train"])
    if len(classes) < 2:
        problems.append(f"train/ has {len(classes)} class folder(s); a classifier needs at least 2")
    for split in SPLITS[1:]:
        lacking = sorted(set(classes) - set(per_split[split]))
        extra = sorted(set(per_split[split]) - set(classes))
        if lacking:
            problems.append(f"{split}/ lacks classes that train/ has: {', '.join(lacking[:MAX_LISTED])}")
        if extra:
            problems.append(f"{split}/ has classes that train/ lacks: {', '.join(extra[:MAX_LISTED])}")
    files, ignored = [], []
    for split in SPLITS:
        for stray in sorted(p for p in (root / split).iterdir() if not p.is_dir()):
            if stray.name.startswith("."):
                ignored.append(stray)
            else:
                problems.append(f"{stray.relative_to(root)}: a file outside the class folders")
        for name in per_split[split]:
            found = 0
            for path in _walk(root / split / name):
                if path.name.startswith("."):
                    ignored.append(path)
                    continue
                reason = _unreadable(path)
                if reason:
                    problems.append(f"{path.relative_to(root)}: {reason}")
                    continue
                found += 1
                files.append(LocalFile(path, path.relative_to(root).as_posix(), path.stat().st_size))
            if not found:
                problems.append(f"{split}/{name}/ holds no images")
    if problems:
        raise DeployError(
            f"{root} cannot be trained on; nothing was uploaded. Fix these and push again:"
            + _problem_list(problems)
        )
    return DataSet(root, classes, files, ignored)


def _walk(folder: Path) -> Iterator[Path]:
    for parent, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            yield Path(parent) / name


def _unreadable(path: Path) -> str | None:
    """Why the trainer could not read this file, or None. Reads the header and checks the structure."""
    if not path.name.lower().endswith(IMAGE_EXTENSIONS):
        return f"not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})"
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as err:  # Pillow raises many types for a bad file; each means "unreadable".
        return f"not a readable image ({err})"
    return None


def etag(path: Path, size: int, config: TransferConfig = TRANSFER) -> str:
    """The ETag S3 gives this file when s3transfer uploads it with `config` (quoted, as S3 lists it)."""
    if size < config.multipart_threshold:
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                digest.update(chunk)
        return f'"{digest.hexdigest()}"'
    part_size = ChunksizeAdjuster().adjust_chunksize(config.multipart_chunksize, size)
    parts = []
    with path.open("rb") as fh:
        while chunk := fh.read(part_size):
            parts.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    return f'"{hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"'


def remote_objects(run: Run, prefix: str) -> dict[str, tuple[int, str]]:
    """key relative to `prefix` -> (size, ETag) of every object under it."""
    pages = run.client("s3").get_paginator("list_objects_v2").paginate(Bucket=run.stack.bucket, Prefix=prefix)
    return {
        obj["Key"][len(prefix) :]: (obj["Size"], obj["ETag"])
        for page in pages
        for obj in page.get("Contents", [])
    }


class _Progress(BaseSubscriber):
    """Bytes on the bar, files done in its postfix; s3transfer calls it from its worker threads."""

    def __init__(self, bar: tqdm, files: int) -> None:
        self.bar, self.files, self.done, self.lock = bar, files, 0, threading.Lock()

    def on_progress(self, future, bytes_transferred: int, **kwargs) -> None:
        with self.lock:
            self.bar.update(bytes_transferred)

    def on_done(self, future, **kwargs) -> None:
        with self.lock:
            self.done += 1
            self.bar.set_postfix_str(f"{self.done}/{self.files} files")


@dataclass
class PushReport:
    prefix: str
    classes: int
    files: Counter = field(default_factory=Counter)  # split -> files in the data set
    sizes: Counter = field(default_factory=Counter)  # split -> bytes
    uploaded: Counter = field(default_factory=Counter)  # split -> files sent
    only_remote: int = 0
    hidden: int = 0

    def lines(self) -> list[str]:
        out = [f"{'split':<6} {'files':>7} {'MB':>9} {'uploaded':>9} {'unchanged':>9}"]
        for split in SPLITS:
            n, sent = self.files[split], self.uploaded[split]
            out.append(f"{split:<6} {n:>7} {self.sizes[split] / 1e6:>9.1f} {sent:>9} {n - sent:>9}")
        out.append(f"{self.classes} classes in s3://{self.prefix}")
        if self.hidden:
            out.append(f"{self.hidden} hidden file(s) such as .DS_Store were not uploaded")
        if self.only_remote:
            out.append(
                f"{self.only_remote} object(s) under that prefix are not in the folder and were left there;"
                " a training job reads them too"
            )
        return out


def push(run: Run, root: Path, channel: str | None = None, config: TransferConfig = TRANSFER) -> PushReport:
    """Checks `root`, then uploads what is not already there; returns what it did, per split."""
    stack = run.stack
    channel = channel or stack.training.channels[0]
    if channel not in stack.training.channels:
        raise DeployError(
            f"channel {channel!r} is not in training.channels ({', '.join(stack.training.channels)})"
        )
    data = check(root)
    s3.ensure_bucket(run)
    prefix = f"{stack.prefix}/data/{channel}/"
    remote = remote_objects(run, prefix)
    report = PushReport(f"{stack.bucket}/{prefix}", len(data.classes), hidden=len(data.ignored))
    todo = []
    for item in data.files:
        split = item.key.split("/", 1)[0]
        report.files[split] += 1
        report.sizes[split] += item.size
        there = remote.get(item.key)
        if there is None or there != (item.size, etag(item.path, item.size, config)):
            todo.append(item)
            report.uploaded[split] += 1
    local = {item.key for item in data.files}
    report.only_remote = sum(1 for key in remote if key not in local)
    if todo:
        _upload(run, todo, prefix, config)
    return report


def _upload(run: Run, todo: list[LocalFile], prefix: str, config: TransferConfig) -> None:
    total = sum(item.size for item in todo)
    # disable=None: a bar on a terminal, nothing in a log file or a pipe.
    with (
        tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload", disable=None) as bar,
        create_transfer_manager(run.client("s3"), config) as manager,
    ):
        progress = _Progress(bar, len(todo))
        futures = [
            manager.upload(
                str(item.path),
                run.stack.bucket,
                prefix + item.key,
                extra_args={"Tagging": "project=kennel"},
                subscribers=[progress],
            )
            for item in todo
        ]
        failed = []
        for item, future in zip(todo, futures, strict=True):
            try:
                future.result()
            except Exception as err:  # s3transfer re-raises each upload's own error, of any type
                failed.append(f"{item.key}: {err}")
    if failed:
        raise DeployError(
            f"{len(failed)} of {len(todo)} uploads failed; push again to send the rest"
            + _problem_list(failed)
        )
