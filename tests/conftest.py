"""Shared fixtures. Container tests build the images once per session through the local image builder
(images/), the same code `make build` runs, so a test always exercises the current Dockerfiles and sources.

`make test` runs the suite on pytest-xdist workers, a test module to a worker (--dist loadscope), so a
module's fixtures are made once. What several modules need and is costly to make (the trained model, the
converted seed model) is made once for the whole run, by whichever worker asks first (`made_once`).
"""

import contextlib
import io
import json
import os
import socket
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import httpx
import pytest

import images

# Modules that take minutes, started first so that no worker is left with a long one at the end: the
# longest first is the simplest schedule that keeps two workers busy to the end (durations: `make test`
# prints the slowest tests).
LONG_FIRST = (
    "tests/browser/test_page.py",
    "tests/compose/test_stack.py",
    "tests/deploy/test_convergence.py",
    "tests/train/test_container.py",
    "tests/sdk/test_local_mode.py",
    "tests/compose/test_faults.py",
    "tests/train/test_rules.py",
    "tests/container/test_compat_variant.py",
    "tests/serve/test_container.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: else as found


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder `make` fills, made once per run: under xdist, workers share the run's temporary root,
    and the first to ask makes it while the others wait on its lock."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the run's root, above each worker's own
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            folder.mkdir(exist_ok=True)
            make(folder)
            done.touch()
    return folder


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


def seed_network():
    """The seed project's network: a ResNet-50 whose fc is Linear(2048, 128) -> ReLU -> Linear(128, 133),
    random weights from a fixed seed."""
    import torch
    import torchvision

    torch.manual_seed(0)
    network = torchvision.models.resnet50(weights=None)
    network.fc = torch.nn.Sequential(torch.nn.Linear(2048, 128), torch.nn.ReLU(), torch.nn.Linear(128, 133))
    return network.eval()


@pytest.fixture(scope="session")
def seed_model(tmp_path_factory):
    """The seed network, its model.pth, and the model directory `convert-seed` makes of it:
    (network, model.pth, model directory). Converted once per run: the ONNX export takes ~25 s."""
    import torch
    from kennel_train import convert_seed

    def convert(root: Path) -> None:
        torch.save(seed_network().state_dict(), root / "model.pth")
        (root / "labels.txt").write_text("".join(f"{i:03d}.breed_{i}\n" for i in range(1, 134)))
        command = [
            str(root / "model.pth"),
            "--labels",
            str(root / "labels.txt"),
            "--out",
            str(root / "model"),
        ]
        assert convert_seed.main(command) == 0

    root = made_once(tmp_path_factory, "seed", convert)
    network = seed_network()
    network.load_state_dict(torch.load(root / "model.pth"))
    return network, root / "model.pth", root / "model"


@pytest.fixture(scope="session")
def trained_model(train_image, docker_client, tmp_path_factory) -> tuple[Path, Path]:
    """A model directory written by the training image (fp32, a guarded INT8 model, the report) from a
    small synthetic set, trained once per run: (the model directory, the data set)."""

    def train(root: Path) -> None:
        from kennel_train.synthetic import write_dataset

        # Five classes: the page shows the top five.
        write_dataset(root / "data", classes=5, per_class=20, size=48, seed=5)
        flags = ["--backbone=resnet18", "--weights=none", "--image-size=48", "--batch-size=8", "--epochs=3"]
        out = ["--data=/data", "--model-dir=/out/model", "--checkpoint-dir=/out/ck", "--output-dir=/out/o"]
        trainer = docker_client.containers.run(
            train_image,
            ["train", *flags, *out],
            detach=True,
            name=f"kennel-test-train-{uuid.uuid4().hex[:8]}",
            volumes={
                str(root / "data"): {"bind": "/data", "mode": "ro"},
                str(root): {"bind": "/out", "mode": "rw"},
            },
        )
        try:
            code = trainer.wait(timeout=300)["StatusCode"]
            logs = trainer.logs().decode()
        finally:
            trainer.remove(force=True)
        assert code == 0, logs[-3000:]
        manifest = json.loads((root / "model" / "manifest.json").read_text())
        assert manifest["models"].get("int8") == "model.int8.onnx", logs[-3000:]

    root = made_once(tmp_path_factory, "trained", train)
    return root / "model", root / "data"


def fill_model_volume(docker_client, project: str, image: str, model_dir: Path) -> None:
    """The compose project's `model` volume, made as compose would and holding `model_dir`, so serving
    starts without running the train service."""
    volume = docker_client.volumes.create(
        f"{project}_model",
        labels={"com.docker.compose.project": project, "com.docker.compose.volume": "model"},
    )
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path in model_dir.iterdir():
            tar.add(path, arcname=path.name)
    helper = docker_client.containers.create(
        image, ["true"], volumes={volume.name: {"bind": "/opt/ml/model"}}
    )
    try:
        helper.put_archive("/opt/ml/model", archive.getvalue())
    finally:
        helper.remove(force=True)
