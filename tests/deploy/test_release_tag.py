"""The release tag: images.tag, else the git revision of a clean containers/, worked out once per run."""

import subprocess
from pathlib import Path

import pytest

from deploy import aws
from deploy.aws import DeployError, Run, release_tag
from deploy.stack import parse
from tests.deploy.conftest import example_doc


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit of containers/."""
    (tmp_path / "containers").mkdir()
    (tmp_path / "containers" / "Dockerfile").write_text("FROM scratch\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=k", "-c", "user.email=k@example.com", "commit", "-qm", "first")
    return tmp_path


def commit(repo: Path, text: str) -> str:
    (repo / "containers" / "Dockerfile").write_text(text)
    git(repo, "-c", "user.name=k", "-c", "user.email=k@example.com", "commit", "-qam", text)
    return git(repo, "rev-parse", "--short=12", "HEAD")


def test_the_tag_is_the_revision_of_a_clean_tree_and_refused_for_a_dirty_one(repo, tmp_path):
    stack = parse(example_doc(), tmp_path)  # the example sets no images.tag
    assert release_tag(stack, repo) == git(repo, "rev-parse", "--short=12", "HEAD")
    (repo / "containers" / "Dockerfile").write_text("FROM scratch\nLABEL changed=1\n")
    with pytest.raises(DeployError, match="containers/ has uncommitted changes"):
        release_tag(stack, repo)
    doc = example_doc()
    doc["images"]["tag"] = "v7"
    assert release_tag(parse(doc, tmp_path), repo) == "v7"


def test_the_shared_packages_both_images_install_count_as_image_sources(repo, tmp_path):
    """kennel_common/ goes into both images, so a change there, committed or not, is a change of image."""
    stack = parse(example_doc(), tmp_path)
    (repo / "kennel_common").mkdir()
    (repo / "kennel_common" / "model_format.py").write_text("FORMAT = 'x'\n")
    with pytest.raises(DeployError, match=r"^kennel_common/ has uncommitted changes"):
        release_tag(stack, repo)
    (repo / "containers" / "Dockerfile").write_text("FROM scratch\nLABEL changed=1\n")
    with pytest.raises(DeployError, match=r"^containers/ and kennel_common/ have uncommitted changes"):
        release_tag(stack, repo)


def test_a_run_keeps_the_tag_it_started_with(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(aws, "ROOT", repo)
    run = Run(parse(example_doc(), tmp_path))
    first = run.release_tag
    second = commit(repo, "FROM scratch\nLABEL release=2\n")
    assert run.release_tag == first != second
    assert Run(run.stack).release_tag == second
