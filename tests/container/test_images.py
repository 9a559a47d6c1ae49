"""Both images build from their Dockerfiles with their pinned dependencies, and start."""

import re
from pathlib import Path

import pytest

import images
from tests.conftest import published_port, wait_for_http

pytestmark = pytest.mark.container
ROOT = Path(__file__).resolve().parents[2]


def pinned(image: str, package: str) -> str:
    text = (ROOT / "containers" / image / "requirements.txt").read_text()
    return re.search(rf"^{re.escape(package)}==(\S+)$", text, re.M | re.I).group(1)


def cacheable_steps(dockerfile: Path) -> int:
    """The instructions after FROM: the build steps that the layer cache can serve."""
    text = dockerfile.read_text().replace("\\\n", " ")
    instructions = re.findall(r"^([A-Z]+)\s", text, re.M)
    return len(instructions) - instructions.index("FROM") - 1


def test_images_are_built_on_the_chosen_base(built_images, docker_client):
    for name, built in built_images.items():
        history = [layer["Id"] for layer in docker_client.images.get(built.tag).history()]
        base_id = docker_client.images.get(built.base_image).id
        assert base_id in history, f"{built.tag} is not built on {built.base_image}"
        # The cache report counts every step of the Dockerfile once.
        assert built.steps == cacheable_steps(images.DOCKERFILES[name]), built.summary()
        assert 0 <= built.cached_steps <= built.steps


def test_serve_image_contract_and_size(built_images, docker_client):
    built = built_images["serve"]
    config = docker_client.images.get(built.tag).attrs["Config"]
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    assert config["Cmd"] == ["serve"]
    assert built.size_bytes - built.base_size_bytes <= 200e6, built.summary()


def test_serve_image_has_its_pins_and_no_torch(serve_image, docker_client):
    script = (
        "import importlib.util, onnxruntime, fastapi;"
        "print(onnxruntime.__version__, fastapi.__version__, importlib.util.find_spec('torch') is None)"
    )
    out = docker_client.containers.run(serve_image, ["python", "-c", script], remove=True).decode().split()
    assert out == [pinned("serve", "onnxruntime"), pinned("serve", "fastapi"), "True"]


def test_serve_container_starts_and_reports_a_missing_model(serve_image, run_container):
    container = run_container(serve_image, ports={"8080/tcp": ("127.0.0.1", None)})
    response = wait_for_http(
        f"http://127.0.0.1:{published_port(container)}/ping", ok=lambda r: r.status_code != 404
    )
    assert response.status_code == 503
    assert "model" in response.json()["reason"]


def test_train_image_has_pinned_torch(train_image, docker_client):
    script = "import torch, torchvision, onnxruntime; print(torch.__version__, torchvision.__version__)"
    out = docker_client.containers.run(train_image, ["python", "-c", script], remove=True).decode().split()
    # The index's CUDA wheels report a local version such as 2.14.1+cu130.
    assert [v.split("+")[0] for v in out] == [pinned("train", "torch"), pinned("train", "torchvision")]


def test_train_entry_point_is_on_path(train_image, docker_client):
    out = docker_client.containers.run(train_image, ["train", "--help"], remove=True).decode()
    assert out.startswith("usage: train")
