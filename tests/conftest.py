"""Shared fixtures. Container tests build the images once per session through the local image builder
(images/), the same code `make build` runs, so a test always exercises the current Dockerfiles and sources."""

import contextlib
import socket
import time
from collections.abc import Iterator

import docker
import httpx
import pytest

import images


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as err:
        pytest.fail(f"no Docker engine answers ({err}); run `make test`, which starts one")
    return client


@pytest.fixture(scope="session")
def build_image(docker_client):
    """Builds an image at most once per session, when a test first needs it (a variant's base first)."""
    built: dict[str, images.BuiltImage] = {}

    def build(name: str) -> images.BuiltImage:
        if name not in built:
            variant = images.VARIANTS.get(name)
            base = build(variant.base).tag if variant else None
            built[name] = images.build(name, base=base, client=docker_client)
        return built[name]

    return build


@pytest.fixture(scope="session")
def built_images(build_image) -> dict[str, images.BuiltImage]:
    return {name: build_image(name) for name in images.DOCKERFILES}


@pytest.fixture(scope="session")
def serve_image(build_image) -> str:
    return build_image("serve").tag


@pytest.fixture(scope="session")
def train_image(build_image) -> str:
    return build_image("train").tag


@pytest.fixture(scope="session")
def compat_image(build_image) -> str:
    """The serving image's compatibility build: the real inference toolkit and the training image's torch."""
    return build_image("serve-compat").tag


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 60.0, ok=lambda r: True) -> httpx.Response:
    """Polls `url` until it answers and `ok(response)` holds; fails the test with the last error."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2.0)
            if ok(response):
                return response
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as err:
            last = err
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer as expected within {timeout:.0f} s: {last}")


@pytest.fixture
def run_container(docker_client) -> Iterator:
    """Starts detached containers and removes them when the test ends."""
    started = []

    def run(image: str, command=None, **kwargs):
        container = docker_client.containers.run(image, command, detach=True, **kwargs)
        started.append(container)
        return container

    yield run
    for container in started:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def run_to_end(client: docker.DockerClient, image: str, command: list[str], **kwargs) -> bytes:
    """The command's stdout, after it has exited 0. Read once the container has stopped: docker-py's
    `run(remove=True)` follows the log of a container that exits at once and can miss all of it."""
    container = client.containers.run(image, command, detach=True, **kwargs)
    try:
        status = container.wait(timeout=300)["StatusCode"]
        assert status == 0, f"{command} exited {status}: {container.logs().decode()[-3000:]}"
        return container.logs(stdout=True, stderr=False)
    finally:
        container.remove(force=True)


def published_port(container, port: str = "8080/tcp") -> int:
    container.reload()
    return int(container.attrs["NetworkSettings"]["Ports"][port][0]["HostPort"])


@pytest.fixture(scope="session")
def seed_model(tmp_path_factory):
    """The seed project's network (a ResNet-50 whose fc is Linear(2048, 128) -> ReLU -> Linear(128, 133),
    random weights from a fixed seed), its model.pth, and the model directory `convert-seed` makes of it:
    (network, model.pth, model directory). Converted once per session: the ONNX export takes ~25 s."""
    import torch
    import torchvision
    from kennel_train import convert_seed

    torch.manual_seed(0)
    network = torchvision.models.resnet50(weights=None)
    network.fc = torch.nn.Sequential(torch.nn.Linear(2048, 128), torch.nn.ReLU(), torch.nn.Linear(128, 133))
    root = tmp_path_factory.mktemp("seed")
    torch.save(network.state_dict(), root / "model.pth")
    (root / "labels.txt").write_text("".join(f"{i:03d}.breed_{i}\n" for i in range(1, 134)))
    command = [str(root / "model.pth"), "--labels", str(root / "labels.txt"), "--out", str(root / "model")]
    assert convert_seed.main(command) == 0
    return network.eval(), root / "model.pth", root / "model"
