"""`data push` against moto: the objects that land in the training channel, what a second push sends
(nothing), and a bad layout that sends nothing at all."""

import io
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from PIL import Image

from deploy import cli, data
from deploy.aws import DeployError

PREFIX = "kennel/data/training/"
MIB = 1024 * 1024
# s3transfer's smallest part: a 6 MiB file goes up in two parts.
SMALL_PARTS = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)


def image_bytes(colour: tuple[int, int, int], fmt: str = "JPEG", size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """3 splits x 2 classes x 2 images, plus a macOS metadata file that is not data."""
    root = tmp_path / "dogImages"
    for split in data.SPLITS:
        for index, breed in enumerate(("001.Affenpinscher", "002.Afghan_hound")):
            folder = root / split / breed
            folder.mkdir(parents=True)
            for n in range(2):
                (folder / f"{breed}_{n}.jpg").write_bytes(image_bytes((index * 100, n * 50, 0)))
    (root / "train" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


def objects() -> dict[str, str]:
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket="kennel-example-data").get("Contents", [])
    return {o["Key"]: o["ETag"] for o in listed}


def summary(out: str) -> dict[str, list[str]]:
    """The per-split rows of the summary: files, MB, uploaded, unchanged."""
    return {
        cells[0]: cells[1:]
        for line in out.splitlines()
        if (cells := line.split()) and cells[0] in data.SPLITS
    }


def count_uploads(run) -> list[str]:
    """The upload calls the run's S3 client makes (single puts and multipart starts)."""
    calls: list[str] = []
    events = run.client("s3").meta.events
    for operation in ("PutObject", "CreateMultipartUpload"):
        events.register(f"before-call.s3.{operation}", lambda model, **kw: calls.append(model.name))
    return calls


def test_push_uploads_the_splits_and_a_second_push_uploads_nothing(dataset, stack_file, capsys):
    assert cli.main(["data", "push", "--stack", str(stack_file), str(dataset)]) == 0
    out = capsys.readouterr().out
    assert summary(out) == {split: ["4", "0.0", "4", "0"] for split in data.SPLITS}
    assert "2 classes in s3://kennel-example-data/kennel/data/training/" in out
    assert "1 hidden file(s) such as .DS_Store were not uploaded" in out
    first = objects()
    assert sorted(first) == sorted(
        f"{PREFIX}{split}/{breed}/{breed}_{n}.jpg"
        for split in data.SPLITS
        for breed in ("001.Affenpinscher", "002.Afghan_hound")
        for n in range(2)
    )
    assert cli.main(["data", "push", "--stack", str(stack_file), str(dataset)]) == 0
    assert summary(capsys.readouterr().out) == {split: ["4", "0.0", "0", "4"] for split in data.SPLITS}
    assert objects() == first


def test_a_changed_file_is_the_only_one_sent_again(dataset, make_run):
    run = make_run()
    data.push(run, dataset)
    changed = dataset / "valid" / "002.Afghan_hound" / "002.Afghan_hound_1.jpg"
    changed.write_bytes(image_bytes((255, 255, 255)))
    calls = count_uploads(run)
    report = data.push(run, dataset)
    assert calls == ["PutObject"]
    assert sum(report.uploaded.values()) == report.uploaded["valid"] == 1
    key = f"{PREFIX}valid/002.Afghan_hound/002.Afghan_hound_1.jpg"
    body = boto3.client("s3").get_object(Bucket="kennel-example-data", Key=key)["Body"].read()
    assert body == changed.read_bytes()


def test_multipart_etags_are_computed_locally_so_big_files_are_skipped_too(dataset, make_run):
    big = dataset / "train" / "001.Affenpinscher" / "big.bmp"
    big.write_bytes(image_bytes((1, 2, 3), "BMP", (1300, 1300)))  # about 4.8 MiB of pixels
    with big.open("ab") as fh:
        fh.write(b"\0" * (MIB + 512 * 1024))  # BMP readers ignore trailing bytes: 6.3 MiB in all
    run = make_run()
    data.push(run, dataset, config=SMALL_PARTS)
    etag = objects()[f"{PREFIX}train/001.Affenpinscher/big.bmp"]
    assert etag.endswith('-2"')
    assert etag == data.etag(big, big.stat().st_size, SMALL_PARTS)
    calls = count_uploads(run)
    assert sum(data.push(run, dataset, config=SMALL_PARTS).uploaded.values()) == 0
    assert calls == []


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: __import__("shutil").rmtree(root / "valid"), "missing valid/"),
        (
            lambda root: (root / "test" / "002.Afghan_hound").rename(root / "test" / "003.Basenji"),
            "test/ lacks classes that train/ has: 002.Afghan_hound",
        ),
        (
            lambda root: (root / "train" / "001.Affenpinscher" / "broken.jpg").write_bytes(
                b"<html>404</html>"
            ),
            "train/001.Affenpinscher/broken.jpg: not a readable image",
        ),
        (
            lambda root: (root / "valid" / "001.Affenpinscher" / "notes.txt").write_text("good dog"),
            "valid/001.Affenpinscher/notes.txt: not an image file",
        ),
    ],
    ids=["missing-split", "class-mismatch", "corrupt-image", "not-an-image"],
)
def test_a_bad_layout_names_the_problem_and_uploads_nothing(dataset, stack_file, capsys, damage, message):
    damage(dataset)
    assert cli.main(["data", "push", "--stack", str(stack_file), str(dataset)]) == 1
    assert message in capsys.readouterr().err
    assert boto3.client("s3").list_buckets()["Buckets"] == []


def test_every_problem_is_listed_at_once(dataset, make_run):
    (dataset / "train" / "001.Affenpinscher" / "a.png").write_bytes(b"PNG? no")
    (dataset / "test" / "002.Afghan_hound" / "b.jpg").write_bytes(image_bytes((0, 0, 0))[:20])
    for path in (dataset / "valid" / "001.Affenpinscher").iterdir():
        path.unlink()
    with pytest.raises(DeployError) as err:
        data.push(make_run(), dataset)
    text = str(err.value)
    assert "nothing was uploaded" in text
    for problem in (
        "train/001.Affenpinscher/a.png",
        "test/002.Afghan_hound/b.jpg",
        "valid/001.Affenpinscher/ holds no images",
    ):
        assert problem in text


def test_an_unknown_channel_is_refused(dataset, make_run):
    with pytest.raises(DeployError, match=r"channel 'pretrained' is not in training\.channels"):
        data.push(make_run(), dataset, channel="pretrained")
