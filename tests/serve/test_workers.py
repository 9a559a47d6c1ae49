"""Several worker processes on one port (kennel_serve.workers): a burst of keep-alive connections is dealt
to them evenly, a worker that dies is replaced, a port that is taken stops `serve` with a clear message, and
SIGTERM ends it with 0 (serve_process checks that on leaving).

`serve` runs for real on the host; which worker holds a connection is read from /proc, as `ss -tnp` does."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from kennel_serve import workers

from tests.conftest import free_port, wait_for_http
from tests.serve.conftest import SERVE, load_pids, serve_environment, serve_process

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or not workers.supported(), reason="reads /proc; hands sockets over SCM_RIGHTS"
)
CONNECTIONS = 16
PING = b"GET /ping HTTP/1.1\r\nHost: kennel\r\n\r\n"


def worker_pids(parent: int) -> list[int]:
    """The server processes that `parent` started (multiprocessing's resource tracker is not one)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue  # not a process, or one that has just ended
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def established_on(port: int) -> set[str]:
    """Socket inodes of the established TCP connections whose local port is `port`."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            inodes.add(fields[9])
    return inodes


def connections_held(pid: int, port: int) -> int:
    inodes = established_on(port)
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        held += target.startswith("socket:[") and target[8:-1] in inodes
    return held


def wait_for_workers(parent: int, count: int, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(pids := worker_pids(parent)) != count:
        if time.monotonic() > deadline:
            pytest.fail(f"expected {count} workers, found {pids}")
        time.sleep(0.1)
    return pids


def test_a_burst_of_keep_alive_connections_reaches_every_worker(tiny_model_dir, tmp_path):
    # uvicorn's shared socket let the first worker to wake accept all 16 in most runs; a socket per worker
    # would split them by a hash of the addresses. Dealt in turn, they split evenly.
    with serve_process(tiny_model_dir, tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="2", KENNEL_CPUS="2") as (
        server,
        base,
    ):
        pids = wait_for_workers(server.pid, 2)
        # Connections go only to workers that have loaded the model: both must have, to share the burst.
        wait_for_http(f"{base}/metrics", timeout=120, ok=lambda r: load_pids(r.text) == pids)
        port = int(base.rsplit(":", 1)[1])
        clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(CONNECTIONS)]
        try:
            for client in clients:
                client.sendall(PING)
            for client in clients:
                assert client.recv(65536).startswith(b"HTTP/1.1 200")
            held = {pid: connections_held(pid, port) for pid in pids}
        finally:
            for client in clients:
                client.close()
    assert sorted(held.values()) == [CONNECTIONS // 2] * 2, held


def test_a_worker_that_dies_is_replaced_and_no_request_meets_it_before_it_has_loaded(
    tiny_model_dir, tmp_path, images
):
    def predict() -> httpx.Response:  # a fresh connection each time, dealt to the next ready worker
        return httpx.post(
            f"{base}/invocations",
            content=images["square.jpg"],
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )

    with serve_process(tiny_model_dir, tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="2", KENNEL_CPUS="2") as (
        server,
        base,
    ):
        before = wait_for_workers(server.pid, 2)
        wait_for_http(f"{base}/metrics", timeout=120, ok=lambda r: load_pids(r.text) == before)
        os.kill(before[0], signal.SIGKILL)
        answers, deadline = [], time.monotonic() + 60
        # Requests go on while the replacement starts and loads: the survivor answers all of them.
        while (after := worker_pids(server.pid)) == before or len(after) != 2 or len(answers) < 40:
            assert time.monotonic() < deadline, f"no replacement for worker {before[0]}: {after}"
            response = predict()
            answers.append(response.status_code)
            assert response.status_code == 200, response.text
        assert before[0] not in after and before[1] in after
        # The supervisor dropped the dead worker's load sample; the replacement's appears once it has loaded.
        wait_for_http(f"{base}/metrics", timeout=120, ok=lambda r: load_pids(r.text) == after)
        assert all(predict().status_code == 200 for _ in range(8))


def test_workers_end_when_the_supervisor_is_killed(tiny_model_dir, tmp_path):
    # SIGKILL leaves the supervisor no time to stop them: they see their channel close, and leave.
    with serve_process(
        tiny_model_dir, tmp_path, status=None, SAGEMAKER_MODEL_SERVER_WORKERS="2", KENNEL_CPUS="2"
    ) as (server, _):
        pids = wait_for_workers(server.pid, 2)
        server.kill()
        server.wait(timeout=30)
        deadline = time.monotonic() + 60
        while running := [pid for pid in pids if alive(pid)]:
            assert time.monotonic() < deadline, f"workers {running} outlived their supervisor"
            time.sleep(0.1)


def alive(pid: int) -> bool:
    try:  # a zombie has ended; only its parent's wait is missing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_port_that_is_taken_stops_serve_with_the_reason(tiny_model_dir, tmp_path):
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", port))
        taken.listen()
        done = subprocess.run(
            SERVE,
            env=serve_environment(tiny_model_dir, tmp_path, port, SAGEMAKER_MODEL_SERVER_WORKERS="2"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 3, done.stderr[-3000:]
    assert f"cannot listen on 0.0.0.0:{port}" in done.stderr
