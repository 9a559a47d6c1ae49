"""`docker compose up` runs the whole topology: train once, serve, proxy; `down -v` leaves nothing behind."""

import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from kennel_train.synthetic import write_dataset

from tests.conftest import free_port

pytestmark = pytest.mark.container
ROOT = Path(__file__).resolve().parents[2]


def compose(project: str, env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "compose", "-p", project, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def leftovers(docker_client, project: str) -> dict[str, list[str]]:
    label = {"label": f"com.docker.compose.project={project}"}
    return {
        "containers": [c.name for c in docker_client.containers.list(all=True, filters=label)],
        "networks": [n.name for n in docker_client.networks.list(filters=label)],
        "volumes": [v.name for v in docker_client.volumes.list(filters=label)],
    }


def test_stack_trains_serves_proxies_and_leaves_nothing(built_images, docker_client, tmp_path):
    project = f"kennel-e2e-{uuid.uuid4().hex[:8]}"
    serve_port, proxy_port = free_port(), free_port()
    empty = tmp_path / "no-data"  # no data mounted: the train service generates its synthetic set
    empty.mkdir()
    env = {
        "BASE_IMAGE": built_images["serve"].base_image,
        "KENNEL_SERVE_PORT": str(serve_port),
        "KENNEL_PROXY_PORT": str(proxy_port),
        "KENNEL_DATA": str(empty),
    }
    write_dataset(tmp_path / "images", classes=5, per_class=6, size=96, seed=7)
    image = next((tmp_path / "images" / "test").rglob("*.jpg")).read_bytes()
    try:
        up = compose(project, env, "up", "--detach", "--wait", "--no-build")
        assert up.returncode == 0, up.stdout + up.stderr + compose(project, env, "logs").stdout

        direct = httpx.post(
            f"http://127.0.0.1:{serve_port}/invocations",
            content=image,
            headers={"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "top_k=3"},
            timeout=30,
        )
        proxied = httpx.post(
            f"http://127.0.0.1:{proxy_port}/?top_k=3",
            content=image,
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
        assert direct.status_code == proxied.status_code == 200, proxied.text
        assert proxied.json() == direct.json()
        assert len(proxied.json()["predictions"][0]) == 3

        garbage = httpx.post(
            f"http://127.0.0.1:{proxy_port}/",
            content=b"not an image",
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
        assert garbage.status_code == 400, garbage.text
        assert garbage.json()["model_status"] == 400

        unsupported = httpx.post(
            f"http://127.0.0.1:{proxy_port}/",
            content=b"x",
            headers={"Content-Type": "text/plain"},
            timeout=30,
        )
        assert unsupported.status_code == 415, unsupported.text

        # Train once: with a model in the volume, another `up` of the train service does nothing.
        again = compose(project, env, "up", "--no-build", "--no-log-prefix", "train")
        output = again.stdout + again.stderr
        assert again.returncode == 0, output
        assert "a model is already in /opt/ml/model; not training" in output, output
        assert "epoch=" not in output
    finally:
        down = compose(project, env, "down", "--volumes", "--remove-orphans")
    assert down.returncode == 0, down.stderr
    assert leftovers(docker_client, project) == {"containers": [], "networks": [], "volumes": []}
