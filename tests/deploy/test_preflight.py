"""The pre-flight: `up` runs a new model in the built serving image before anything goes to AWS (moto
here), and refuses one that does not load."""

import re
import shutil
from pathlib import Path

import boto3
import pytest
import torch

from deploy import cli, lifecycle, preflight, s3
from deploy import stack as stack_module
from deploy.aws import Run
from tests.serve.conftest import TINY_LABELS, TINY_PREPROCESSING, TinyNet, write_model_dir


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny model directory as tests/serve/conftest.py makes it."""
    torch.manual_seed(0)
    model = TinyNet(len(TINY_LABELS))
    return write_model_dir(tmp_path_factory.mktemp("tiny"), model, TINY_LABELS, TINY_PREPROCESSING, 32)


@pytest.fixture
def release(stack_doc, write_stack, publish, serve_image):
    """release(model_dir, up=True) -> lines said: `up` with the pre-flight serving `model_dir`, or with
    up=False the pre-flight step alone (moto cannot update an endpoint)."""

    def run_it(model_dir: Path, dry_run: bool = False, up: bool = True) -> list[str]:
        stack_doc["model"]["dir"] = str(model_dir)
        lines: list[str] = []
        run = Run(
            stack_module.load(write_stack(stack_doc)),
            dry_run=dry_run,
            poll_seconds=0,
            say=lines.append,
            publish=publish,
        )
        if up:
            lifecycle.up(run, with_preflight=True)
        else:
            preflight.ensure_preflight(run, enabled=True)
        return lines

    return run_it


@pytest.mark.container
def test_a_good_model_passes_then_is_compared_with_the_one_serving(
    release, tiny_model_dir, tmp_path, monkeypatch
):
    planned = release(tiny_model_dir, dry_run=True)
    assert f"pre-flight: would run {tiny_model_dir} in kennel-serve:" in "\n".join(planned)
    archived, archive = [], s3.archive
    monkeypatch.setattr(s3, "archive", lambda folder: archived.append(folder) or archive(folder))
    lines = release(tiny_model_dir)
    assert archived == [tiny_model_dir]  # the pre-flight and the upload share one compression
    assert f"pre-flight: {tiny_model_dir} loaded, /ping 200, 8/8 images answered" in lines
    assert not any("agreement" in line for line in lines)  # nothing served before
    assert boto3.client("sagemaker").list_endpoints()["Endpoints"]
    # The same network in a new archive: a new release, whose answers must all agree with the old.
    same = tmp_path / "same"
    shutil.copytree(tiny_model_dir, same)
    (same / "NOTES.txt").write_text("retrained on the same data\n")
    again = release(same, up=False)
    assert "pre-flight: top-1 agreement with the serving model: 8/8 images (100%)" in again, again
    # The model already serving: nothing new goes to AWS, so nothing to check.
    unchanged = release(tiny_model_dir, up=False)
    assert any(
        re.match(r"pre-flight: not needed, the endpoint already serves s3://", line) for line in unchanged
    )


@pytest.mark.container
def test_a_model_that_does_not_load_is_refused_before_anything_is_uploaded(
    release, tiny_model_dir, tmp_path, pushed
):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.onnx").write_bytes(b"\x08\x07garbage, not a protobuf" * 64)
    with pytest.raises(preflight.PreflightError) as err:
        release(broken)
    assert str(err.value).startswith(
        f"pre-flight: the model in {broken} did not load; nothing was sent to AWS"
    )
    assert pushed == []
    listed = boto3.client("s3").list_objects_v2(Bucket="kennel-example-data")
    assert "Contents" not in listed
    assert boto3.client("sagemaker").list_models()["Models"] == []


def test_without_docker_the_preflight_is_skipped_and_says_so(stack_doc, write_stack, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    lines: list[str] = []
    run = Run(stack_module.load(write_stack(stack_doc)), dry_run=True, say=lines.append)
    lifecycle.up(run, with_preflight=True)
    assert any(line.startswith("pre-flight: skipped, Docker is not available (") for line in lines), lines


def test_plan_says_whether_up_will_run_the_preflight(stack_file, capsys, monkeypatch):
    assert cli.main(["plan", "--stack", str(stack_file), "--no-preflight"]) == 0
    assert "pre-flight: off\n" in capsys.readouterr().out
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert cli.main(["plan", "--stack", str(stack_file)]) == 0
    assert "pre-flight: skipped, Docker is not available (" in capsys.readouterr().out
