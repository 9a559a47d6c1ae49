"""`python -m deploy loadtest`: the knee search against a simulated server whose latency curve is known
(on a simulated clock, so no test depends on this machine's speed), and the command against a real HTTP
server on 127.0.0.1 whose capacity is known: two requests at a time, 50 ms each, so about 40 requests/s."""

import argparse
import io
import math
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
    status = run(stack, server.url, "--p99-ms", "200", "--probe-seconds", "1", "--step-seconds", "1.5",
                 "--write")  # fmt: skip
    out = capsys.readouterr()
    assert status == 0, out
    rate = float(re.search(r"Highest sustained rate ([\d.]+) req/s", out.out).group(1))
    value = int(re.search(r"= (\d+)\n", out.out).group(1))
    assert CAPACITY_RPS / 2 <= rate <= CAPACITY_RPS * 1.25
    # The report prints the rate to two decimals; the target comes from the unrounded rate.
    assert loadtest.target_value(rate - 0.005, 0.5) <= value <= loadtest.target_value(rate + 0.005, 0.5)
    assert "| offered req/s |" in out.out and "NOT sustained" in out.err and "LOWER BOUND" not in out.out

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


def test_a_lower_bound_says_so_and_is_written_only_when_forced(server, stack, capsys):
    # A goal every step meets: only the time bound can end the run, and no step failed.
    before = stack.read_text()
    flags = ("--p99-ms", "60000", "--probe-seconds", "0.5", "--step-seconds", "0.5", "--max-seconds", "2")
    assert run(stack, server.url, *flags, "--write") == 1
    out = capsys.readouterr().out
    assert "time bound --max-seconds 2" in out and "LOWER BOUND" in out and "needs --force" in out
    assert stack.read_text() == before
    assert run(stack, server.url, *flags, "--write", "--force") == 0
    assert "wrote target_invocations_per_instance" in capsys.readouterr().out
    assert stack.read_text() != before


def test_sends_only_to_the_named_url(server, stack, capsys):
    redirector = serve(redirect_to=server.url)
    try:
        status = run(
            stack, redirector.url, "--p99-ms", "300", "--probe-seconds", "0.5", "--step-seconds", "0.5"
        )
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


class SimulatedServer:
    """A server whose p99 at an offered rate is `base_ms / (1 - rate / capacity)` (a single queue's curve,
    infinite at capacity and beyond), on a simulated clock: a probe or a step advances it by its length."""

    def __init__(self, capacity: float, base_ms: float, plan: loadtest.SearchPlan) -> None:
        self.capacity, self.base_ms, self.plan = capacity, base_ms, plan
        self.now = 0.0
        self.offered: list[float] = []

    def knee(self, p99_ms: float) -> float:
        return self.capacity * (1 - self.base_ms / p99_ms)

    def probe(self, deadline: float) -> float:
        self.now += self.plan.probe_seconds
        return self.capacity

    def step(self, rate: float, deadline: float) -> loadtest.Step:
        self.offered.append(rate)
        if self.now + self.plan.step_seconds > deadline:  # as run_step does: cut short at the deadline
            sent = round(rate * (deadline - self.now))
            self.now = deadline
            return loadtest.Step(rate, sent, sent, 0, rate, self.base_ms, self.base_ms, False, True)
        self.now += self.plan.step_seconds + 1  # one second to drain
        p99 = self.base_ms / (1 - rate / self.capacity) if rate < self.capacity else math.inf
        sustained = p99 <= self.plan.p99_ms
        sent = round(rate * self.plan.step_seconds)
        ok = sent if sustained else sent // 2
        return loadtest.Step(rate, sent, ok, sent - ok, rate if sustained else self.capacity,
                             self.base_ms, p99, sustained, False)  # fmt: skip


def default_plan(p99_ms: float, *flags: str) -> loadtest.SearchPlan:
    """The plan the command builds from its default flags (and `flags`)."""
    parser = argparse.ArgumentParser()
    loadtest.arguments(parser)
    args = parser.parse_args(["--url", "http://x", "--image", "x.jpg", "--p99-ms", str(p99_ms), *flags])
    return loadtest.SearchPlan(
        p99_ms=args.p99_ms, step_seconds=args.step_seconds, probe_seconds=args.probe_seconds,
        max_seconds=args.max_seconds, max_rps=args.max_rps, growth=args.growth, backoff=args.backoff,
        precision=args.precision,
    )  # fmt: skip


def simulate(capacity: float, base_ms: float, p99_ms: float, *flags: str):
    plan = default_plan(p99_ms, *flags)
    server = SimulatedServer(capacity, base_ms, plan)
    found = loadtest.search(plan, server.probe, server.step, lambda: server.now, io.StringIO())
    return plan, server, found


@pytest.mark.parametrize(
    ("capacity", "base_ms", "p99_ms"),
    [(70, 50, 500), (700, 5, 500), (70, 50, 100), (3000, 2, 50), (2, 400, 1000)],
)
def test_default_search_brackets_the_knee_within_the_bound(capacity, base_ms, p99_ms):
    plan, server, found = simulate(capacity, base_ms, p99_ms)
    knee = server.knee(p99_ms)
    assert knee / (1 + plan.precision) <= found.max_rps <= knee
    assert not found.lower_bound and found.stopped.startswith("bracketed")
    assert server.now <= plan.max_seconds == 180
    # The steps bracket the knee: some below it, some above, none far from it after the first.
    assert min(server.offered) <= knee < max(server.offered)


def test_an_instance_above_max_rps_is_reported_as_a_lower_bound():
    _, server, found = simulate(700, 5, 500, "--max-rps", "100")
    assert found.lower_bound and found.stopped == "reached --max-rps 100"
    assert found.max_rps == 100 and max(server.offered) == 100


def test_the_time_bound_ends_a_search_and_leaves_a_lower_bound():
    plan, server, found = simulate(70, 50, 500, "--max-seconds", "30", "--step-seconds", "12")
    assert found.stopped == "time bound --max-seconds 30"
    assert server.now <= plan.max_seconds
    # The probe (10 s) and one step (13 s) fit; the second is cut short at the bound and proves nothing.
    assert [step.cut_short for step in found.steps] == [False, True]
    assert found.max_rps == 0  # the one finished step (at saturation) failed: no rate to report


def test_a_server_that_sustains_nothing_is_not_given_a_rate():
    plan, server, found = simulate(70, 600, 500)  # even an idle request misses the goal
    assert found.max_rps == 0 and found.steps and all(not step.sustained for step in found.steps)
    assert server.now <= plan.max_seconds
