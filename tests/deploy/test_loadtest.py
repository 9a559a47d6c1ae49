"""`python -m deploy loadtest` against a real HTTP server on 127.0.0.1 whose capacity is known: two
requests at a time, 50 ms each, so about 40 requests/s."""

import re
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deploy import cli, loadtest
from deploy.aws import DeployError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "stack.example.toml"
SERVICE_SECONDS = 0.05
SLOTS = 2
CAPACITY_RPS = SLOTS / SERVICE_SECONDS


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, redirect_to: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.slots = threading.Semaphore(SLOTS)
        self.requests: list[tuple[str, str]] = []  # (client address, Host header)
        self.redirect_to = redirect_to

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/invocations"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.client_address[0], self.headers["Host"]))
        if self.server.redirect_to:
            self.reply(307, {"Location": self.server.redirect_to})
            return
        with self.server.slots:
            time.sleep(SERVICE_SECONDS)
        self.reply(200, {"Content-Type": "application/json"}, b'{"predictions": []}')

    def reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(redirect_to: str | None = None) -> Server:
    server = Server(redirect_to)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def server() -> Iterator[Server]:
    server = serve()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    path = tmp_path / "stack.toml"
    shutil.copy(EXAMPLE, path)
    (tmp_path / "image.jpg").write_bytes(b"\xff\xd8 not really a JPEG, the stand-in server does not look")
    return path


def run(stack: Path, url: str, *flags: str) -> int:
    return cli.main(
        ["loadtest", "--stack", str(stack), "--url", url, "--image", str(stack.parent / "image.jpg"), *flags]
    )


def test_finds_the_known_capacity_and_writes_only_the_target(server, stack, capsys):
    before = stack.read_text().splitlines(keepends=True)
    status = run(stack, server.url, "--p99-ms", "300", "--start-rps", "8", "--growth", "1.5",
                 "--step-seconds", "1", "--write")  # fmt: skip
    out = capsys.readouterr()
    assert status == 0, out
    rate = float(re.search(r"Highest sustained rate ([\d.]+) req/s", out.out).group(1))
    value = int(re.search(r"= (\d+)\n", out.out).group(1))
    assert CAPACITY_RPS / 2 <= rate <= CAPACITY_RPS * 2
    # The report prints the rate to two decimals; the target comes from the unrounded rate.
    assert loadtest.target_value(rate - 0.005, 0.5) <= value <= loadtest.target_value(rate + 0.005, 0.5)
    assert "| offered req/s |" in out.out and "NOT sustained" in out.err

    after = stack.read_text().splitlines(keepends=True)
    changed = [i for i, (old, new) in enumerate(zip(before, after, strict=True)) if old != new]
    assert [after[i] for i in changed] == [f"target_invocations_per_instance = {value}\n"]
    assert before[changed[0]] == "target_invocations_per_instance = 600\n"


def test_target_follows_the_rule_and_the_safety_factor():
    assert loadtest.target_value(20, 0.5) == 600
    assert loadtest.target_value(37.9, 0.25) == 568


def test_write_keeps_a_trailing_comment_and_needs_the_key(tmp_path):
    path = tmp_path / "stack.toml"
    template = (
        "[endpoint]\n{key} = 1\n[autoscaling]\n{key} = {value}  # from a load test\nmax_instances = 4\n"
    )
    path.write_text(template.format(key=loadtest.TARGET_KEY, value=600))
    loadtest.write_target(path, 1234)
    assert path.read_text() == template.format(key=loadtest.TARGET_KEY, value=1234)
    path.write_text("[autoscaling]\nmax_instances = 4\n")
    with pytest.raises(DeployError):
        loadtest.write_target(path, 1)


def test_stops_by_itself_within_the_time_bound(server, stack, capsys):
    # A goal every step meets and a rate that barely grows: only the time bound can end the run.
    status = run(stack, server.url, "--p99-ms", "60000", "--start-rps", "10", "--growth", "1.01",
                 "--step-seconds", "0.5", "--max-seconds", "2")  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    assert "time bound --max-seconds 2" in out
    # Every request sent was scheduled within the bound: 2 s at the highest rate reached (under 10.5/s),
    # plus one per step for the request at each step's start.
    assert 10 <= len(server.requests) <= 2 * 10.5 + 4


def test_sends_only_to_the_named_url(server, stack, capsys):
    redirector = serve(redirect_to=server.url)
    try:
        status = run(stack, redirector.url, "--p99-ms", "300", "--start-rps", "5", "--step-seconds", "0.5")
    finally:
        redirector.shutdown()
        redirector.server_close()
    assert status == 1
    assert "no step was sustained" in capsys.readouterr().out
    assert server.requests == []  # the redirect was not followed
    assert {address for address, _ in redirector.requests} == {"127.0.0.1"}
    assert {host for _, host in redirector.requests} == {f"127.0.0.1:{redirector.server_address[1]}"}


def test_refuses_anything_but_one_explicit_http_target(stack, capsys):
    image = str(stack.parent / "image.jpg")
    with pytest.raises(SystemExit):
        cli.main(["loadtest", "--stack", str(stack), "--image", image, "--p99-ms", "100"])
    assert run(stack, "file:///etc/passwd", "--p99-ms", "100") == 1
    assert run(stack, "127.0.0.1:8080/invocations", "--p99-ms", "100") == 1
    assert "needs an http:// or https:// URL" in capsys.readouterr().err
