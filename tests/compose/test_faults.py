"""Faults in the compose stack: the serving container killed or restarted under load, and a training container
killed mid-epoch. What a client sees is asserted; how long anything takes is not (only bounded by timeouts).

    KENNEL_TAG=dev .venv/bin/python -m pytest tests/compose/test_faults.py
"""

import base64
import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from kennel_train.synthetic import write_dataset

from kennel_proxy.defaults import VARIABLES
from tests.compose.test_stack import compose
from tests.conftest import fill_model_volume, free_port
from tests.serve.conftest import TINY_LABELS, TINY_PREPROCESSING, TinyNet, write_model_dir

pytestmark = pytest.mark.container
# The proxy's own limits (kennel_proxy/defaults.py): no answer may take longer than connect + read, plus a
# margin for a loaded machine. A dropped connection is tried again (kennel_proxy/local_runtime.py), but
# drops come at once here and the waits between attempts are at most 50 + 100 ms, inside the margin. Past
# this is a hang.
CONNECT_S, READ_S = (float(VARIABLES[f"KENNEL_INVOKE_{step}_TIMEOUT_S"][0]) for step in ("CONNECT", "READ"))
PROXY_DEADLINE_S = CONNECT_S + READ_S + 10
RECOVERY_TIMEOUT_S = 120
HEAVY_IMAGES = 300
CHUNK = 1 << 16


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    proxy: str
    serve: str


def labels(project: str, service: str) -> dict[str, list[str]]:
    return {"label": [f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]}


@pytest.fixture(scope="module")
def stack(built_images, docker_client, tmp_path_factory) -> Iterator[Stack]:
    """serve and proxy from docker-compose.yml (their restart policies included), without training."""
    project = f"kennel-faults-{uuid.uuid4().hex[:8]}"
    serve_port, proxy_port = free_port(), free_port()
    env = {
        "KENNEL_SERVE_PORT": str(serve_port),
        "KENNEL_PROXY_PORT": str(proxy_port),
        "KENNEL_DATA": str(tmp_path_factory.mktemp("no-data")),
    }
    model_dir = write_model_dir(
        tmp_path_factory.mktemp("model"), TinyNet(len(TINY_LABELS)), TINY_LABELS, TINY_PREPROCESSING, 32
    )
    fill_model_volume(docker_client, project, built_images["serve"].tag, model_dir)
    try:
        up = compose(project, env, "up", "--detach", "--wait", "--no-build", "--no-deps", "serve", "proxy")
        assert up.returncode == 0, up.stdout + up.stderr + compose(project, env, "logs").stdout
        yield Stack(project, env, f"http://127.0.0.1:{proxy_port}/", f"http://127.0.0.1:{serve_port}")
    finally:
        down = compose(project, env, "down", "--volumes", "--remove-orphans")
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("images")
    write_dataset(folder, classes=2, per_class=3, size=96, seed=3)
    return next(folder.rglob("*.jpg")).read_bytes()


@dataclass
class Load:
    """Clients sending `jpeg` through the proxy until stopped; every answer (or failure) is kept."""

    url: str
    jpeg: bytes
    answers: list[tuple[int, dict, str | None]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                response = httpx.post(
                    self.url,
                    content=self.jpeg,
                    headers={"Content-Type": "image/jpeg"},
                    timeout=PROXY_DEADLINE_S,
                )
                self.answers.append(
                    (response.status_code, response.json(), response.headers.get("retry-after"))
                )
            except (httpx.HTTPError, ValueError) as err:
                self.failures.append(repr(err))

    def __enter__(self) -> "Load":
        self.threads = [threading.Thread(target=self.run) for _ in range(4)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join()

    def wait_for_answers(self, count: int) -> None:
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while len(self.answers) < count and time.monotonic() < deadline:
            time.sleep(0.05)


def serve_container(docker_client, project: str):
    (container,) = docker_client.containers.list(all=True, filters=labels(project, "serve"))
    return container


def wait_healthy(container, restarts_at_least: int) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        container.reload()
        state = container.attrs["State"]
        healthy = state.get("Health", {}).get("Status") == "healthy"
        if state["Running"] and healthy and container.attrs["RestartCount"] >= restarts_at_least:
            return
        time.sleep(0.2)
    pytest.fail(f"serve did not come back healthy within {RECOVERY_TIMEOUT_S} s: {container.attrs['State']}")


def assert_outage_answers(answers: list[tuple[int, dict, str | None]]) -> None:
    """While serve is down, the proxy answers 502/503 JSON with Retry-After, never anything else."""
    for status, body, retry_after in answers:
        if status == 200:
            assert body["predictions"]
            continue
        assert status in (502, 503), (status, body)
        assert body["type"] in {"endpoint_unreachable", "endpoint_connection_lost", "endpoint_unavailable"}
        assert body["request_id"]
        assert retry_after and int(retry_after) >= 1


def test_serve_killed_under_load_recovers_by_itself(stack, docker_client, jpeg):
    container = serve_container(docker_client, stack.project)
    restarts = container.attrs["RestartCount"]
    with Load(stack.proxy, jpeg) as load:
        load.wait_for_answers(8)
        # From the host, as the kernel's OOM killer would: `docker kill` counts as a manual stop, which
        # restart policies ignore.
        os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)
        wait_healthy(container, restarts + 1)
        during = len(load.answers)
    first = httpx.post(
        stack.proxy, content=jpeg, headers={"Content-Type": "image/jpeg"}, timeout=PROXY_DEADLINE_S
    )

    assert load.failures == []  # every request got an answer within the proxy's own timeouts
    assert_outage_answers(load.answers)
    assert any(status != 200 for status, _, _ in load.answers[:during]), "the outage was never seen"
    assert first.status_code == 200, first.text
    assert first.json()["predictions"]


def test_compose_restart_under_load_loses_no_accepted_request(stack, docker_client, jpeg):
    container = serve_container(docker_client, stack.project)
    # Requests with many images each: decoding them keeps serve busy after their bodies are sent.
    heavy_body = json.dumps({"instances": [{"b64": base64.b64encode(jpeg).decode()}] * HEAVY_IMAGES}).encode()
    heavy: list[httpx.Response | Exception] = []
    sent = [threading.Event() for _ in range(2)]

    def send_heavy(done_sending: threading.Event) -> None:
        def body() -> Iterator[bytes]:
            for start in range(0, len(heavy_body), CHUNK):
                yield heavy_body[start : start + CHUNK]
            done_sending.set()  # httpx asks for more only after the last chunk is written

        try:
            heavy.append(
                httpx.post(
                    f"{stack.serve}/invocations",
                    content=body(),
                    headers={"Content-Type": "application/json"},
                    timeout=60,
                )
            )
        except httpx.HTTPError as err:
            heavy.append(err)
            done_sending.set()

    with Load(stack.proxy, jpeg) as load:
        load.wait_for_answers(8)
        senders = [threading.Thread(target=send_heavy, args=(event,)) for event in sent]
        for sender in senders:
            sender.start()
        for event in sent:
            assert event.wait(timeout=60)
        restart = compose(stack.project, stack.env, "restart", "serve", timeout=120)
        for sender in senders:
            sender.join()
        wait_healthy(container, 0)  # a manual restart starts docker's restart count afresh

    assert restart.returncode == 0, restart.stderr
    assert [getattr(r, "status_code", r) for r in heavy] == [200, 200]
    assert all(len(r.json()["predictions"]) == HEAVY_IMAGES for r in heavy)
    assert load.failures == []
    assert_outage_answers(load.answers)
    # Sent and then dropped would be endpoint_connection_lost: a request serve accepted and lost.
    assert not [body for _, body, _ in load.answers if body.get("type") == "endpoint_connection_lost"]


def test_training_killed_mid_epoch_resumes_on_the_next_up(built_images, docker_client, tmp_path):
    project = f"kennel-resume-{uuid.uuid4().hex[:8]}"
    data = tmp_path / "data"
    write_dataset(data, classes=2, per_class=8, size=48, seed=5)
    epochs = 4
    env = {
        "KENNEL_DATA": str(data),
        "KENNEL_SERVE_PORT": str(free_port()),
        "KENNEL_PROXY_PORT": str(free_port()),
        "KENNEL_TRAIN_ARGS": f"--backbone resnet18 --weights none --epochs {epochs} --image-size 32 "
        "--resize 36 --batch-size 4 --workers 0 --quantize false",
    }
    try:
        first = compose(project, env, "up", "--detach", "--no-build", "train")
        assert first.returncode == 0, first.stderr
        (container,) = docker_client.containers.list(all=True, filters=labels(project, "train"))
        # The first epoch's line is printed after its checkpoint is saved: epoch 2 is now running.
        epoch_lines = wait_for_log(container, r"epoch=1/")
        os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)
        container.wait(timeout=60)
        killed_log = container.logs().decode()

        second = compose(project, env, "up", "--no-build", "--no-log-prefix", "train", timeout=600)
        container.reload()
    finally:
        logs = compose(project, env, "logs", "--no-log-prefix", "train").stdout
        manifest = docker_client.containers.run(
            built_images["serve"].tag,
            ["python", "-c", "import sys; sys.stdout.write(open('/opt/ml/model/manifest.json').read())"],
            volumes={f"{project}_model": {"bind": "/opt/ml/model", "mode": "ro"}},
            remove=True,
        )
        compose(project, env, "down", "--volumes", "--remove-orphans")

    assert epoch_lines
    assert f"epoch={epochs}/{epochs}" not in killed_log
    assert second.returncode == 0, second.stdout + second.stderr
    assert container.attrs["State"]["ExitCode"] == 0, logs
    resumed = re.search(r"resuming from /opt/ml/checkpoints at epoch (\d+)/(\d+)", logs)
    assert resumed, logs
    assert int(resumed.group(1)) >= 2 and int(resumed.group(2)) == epochs
    finished = re.findall(rf"epoch=(\d+)/{epochs} train", logs)  # compose may prefix terminal codes
    assert sorted({int(e) for e in finished}) == list(range(1, epochs + 1)), logs
    assert finished[-1] == str(epochs)
    assert json.loads(manifest)["metrics"]["epochs"] == epochs


def wait_for_log(container, pattern: str, timeout: float = 300) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(pattern, container.logs().decode(), re.MULTILINE)
        if found:
            return found
        container.reload()
        if container.status == "exited":
            pytest.fail(f"training ended before {pattern!r}: {container.logs().decode()[-2000:]}")
        time.sleep(0.1)
    pytest.fail(f"no {pattern!r} in the training log within {timeout:.0f} s")
