"""`python -m deploy loadtest`: the auto-scaling target of one instance, measured by a load test.

    python -m deploy loadtest --stack deploy/stack.example.toml --url http://127.0.0.1:8080/invocations \\
        --image docs/sample.jpg --p99-ms 500
    python -m deploy loadtest --stack deploy/stack.example.toml --endpoint --image docs/sample.jpg \\
        --p99-ms 500 --write
    python -m deploy loadtest --stack deploy/stack.example.toml --lambda --image docs/sample.jpg --p99-ms 1000

Sends the image to exactly one target: the URL given with --url (redirects are not followed), the stack's
endpoint through sagemaker-runtime, or the stack's Lambda. It finds the knee in three phases:
1. a closed-loop probe (--probe-concurrency requests always in flight for --probe-seconds) measures the
   saturation rate;
2. open-loop steps (a fixed request rate for --step-seconds) bracket the knee: the first at the saturation
   rate, then down by --backoff until one is sustained, or up by --growth until one is not;
3. bisection of the bracket (geometric midpoints) until its ends are within --precision of each other.
A step is sustained when every request succeeds and the p99 latency, counted from each request's scheduled
send time, is within --p99-ms. The highest sustained rate becomes the target of
SageMakerVariantInvocationsPerInstance by AWS's rule: rate x 60 x safety factor (0.5 by default). Load-test
a single-instance endpoint: the rate is per instance. When no step failed (the time bound or --max-rps came
first) the rate is only a lower bound: the report says so and --write refuses it unless --force is given.
"""

import argparse
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from deploy import invoke
from deploy.aws import DeployError, Run

Send = Callable[[], None]
TARGET_KEY = "target_invocations_per_instance"


@dataclass(frozen=True)
class Step:
    offered_rps: float
    sent: int
    ok: int
    failed: int
    served_rps: float
    p50_ms: float
    p99_ms: float
    sustained: bool
    cut_short: bool  # by the time bound: neither sustained nor refuted


@dataclass(frozen=True)
class Capacity:
    steps: list[Step]
    stopped: str
    saturation_rps: float = 0.0  # the closed-loop probe's rate

    @property
    def max_rps(self) -> float:
        return max((step.served_rps for step in self.steps if step.sustained), default=0.0)

    @property
    def lower_bound(self) -> bool:
        """No step failed: the knee lies somewhere above the highest sustained rate."""
        return not any(not step.sustained and not step.cut_short for step in self.steps)


def target_value(max_rps: float, safety_factor: float) -> int:
    """Invocations per instance per minute: the sustained rate x 60 x the safety factor, rounded down."""
    return math.floor(max_rps * 60 * safety_factor)


def http_sender(url: str, body: bytes, content_type: str, timeout_s: float) -> Send:
    """Posts to `url` and nowhere else: no redirects, no proxy from the environment."""
    import httpx  # only --url needs it; the other commands never load it

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeployError(f"--url {url!r}: needs an http:// or https:// URL with a host")
    client = httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False)
    headers = {"Content-Type": content_type, "Accept": "application/json"}

    def send() -> None:
        client.post(url, content=body, headers=headers).raise_for_status()

    return send


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; infinite for no values, so an empty step is never sustained."""
    if not values:
        return math.inf
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def run_step(send: Send, rate: float, seconds: float, deadline: float, p99_ms: float, workers: int) -> Step:
    """Offers `rate` requests/s for `seconds` (cut short at `deadline`, a time.monotonic() value).
    Latency counts from the scheduled send time, so a slow server cannot slow the offered load down;
    a request that finds every worker busy, fails, or is unfinished at the end counts as failed."""
    latencies: list[float] = []
    lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="loadtest")
    in_flight: set[Future] = set()
    start = time.monotonic()
    end = min(start + seconds, deadline)
    sent = 0

    def timed(scheduled: float) -> None:
        send()
        with lock:
            latencies.append((time.monotonic() - scheduled) * 1000)

    while (scheduled := start + sent / rate) < end:
        time.sleep(max(0.0, scheduled - time.monotonic()))
        in_flight = {future for future in in_flight if not future.done()}
        sent += 1
        if len(in_flight) >= workers:
            continue
        in_flight.add(pool.submit(timed, scheduled))
    drain = min(deadline - time.monotonic(), max(1.0, 4 * p99_ms / 1000))
    unfinished = wait(in_flight, timeout=max(0.0, drain)).not_done
    cut_short = end < start + seconds or (bool(unfinished) and time.monotonic() >= deadline)
    pool.shutdown(wait=False, cancel_futures=True)
    elapsed = max(time.monotonic() - start, 1e-9)
    with lock:
        done = list(latencies)
    ok, p99 = len(done), percentile(done, 0.99)
    sustained = ok == sent and p99 <= p99_ms and not cut_short
    return Step(rate, sent, ok, sent - ok, ok / elapsed, percentile(done, 0.5), p99, sustained, cut_short)


def probe(send: Send, concurrency: int, seconds: float, deadline: float) -> float:
    """Closed loop: `concurrency` senders, each sending again as soon as its answer comes, for `seconds`
    (cut short at `deadline`); successful answers per second. Saturates any server that serves at most
    `concurrency` requests at a time."""
    done = 0
    lock = threading.Lock()
    start = time.monotonic()
    end = min(start + seconds, deadline)

    def sender() -> None:
        nonlocal done
        while time.monotonic() < end:
            try:
                send()
            except Exception:  # a failed request still took its turn; the steps judge failures
                time.sleep(0.01)
                continue
            with lock:
                done += 1

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()) + 1)
    return done / max(time.monotonic() - start, 1e-9)


@dataclass(frozen=True)
class SearchPlan:
    """How the knee is searched for; the command's flags."""

    p99_ms: float
    step_seconds: float
    probe_seconds: float
    max_seconds: float
    max_rps: float
    growth: float = 1.25
    backoff: float = 0.7
    precision: float = 0.05


def search(
    plan: SearchPlan,
    probe_rps: Callable[[float], float],
    step: Callable[[float, float], Step],
    clock: Callable[[], float],
    progress: TextIO,
) -> Capacity:
    """The knee: `probe_rps(deadline)` gives the saturation rate, `step(rate, deadline)` runs one open-loop
    step; `clock` (time.monotonic, or a simulated one) bounds the whole search by plan.max_seconds."""
    began = clock()
    deadline = began + plan.max_seconds
    saturation = probe_rps(deadline)
    print(f"[{clock() - began:5.1f}/{plan.max_seconds:g} s] closed-loop probe: {saturation:.2f} req/s "
          "at saturation", file=progress, flush=True)  # fmt: skip
    steps: list[Step] = []
    if saturation <= 0:
        return Capacity(steps, "no request succeeded in the closed-loop probe", saturation)
    good, bad = 0.0, math.inf  # the highest rate sustained, the lowest not sustained
    rate = min(saturation, plan.max_rps)
    while True:
        if clock() + plan.step_seconds / 2 > deadline:
            return Capacity(steps, f"time bound --max-seconds {plan.max_seconds:g}", saturation)
        result = step(rate, deadline)
        steps.append(result)
        print(
            f"[{clock() - began:5.1f}/{plan.max_seconds:g} s] {rate:7.2f} req/s offered: "
            f"{result.served_rps:7.2f} served, p99 {result.p99_ms:8.1f} ms, {result.failed} failed -> "
            f"{verdict(result)}",
            file=progress,
            flush=True,
        )
        if result.cut_short:
            return Capacity(steps, f"time bound --max-seconds {plan.max_seconds:g}", saturation)
        if result.sustained:
            good = max(good, rate)
        else:
            bad = min(bad, rate)
        if bad <= good * (1 + plan.precision):
            return Capacity(steps, f"bracketed within {plan.precision:.0%}", saturation)
        if good and bad < math.inf:
            rate = math.sqrt(good * bad)
        elif good:
            if rate >= plan.max_rps:
                return Capacity(steps, f"reached --max-rps {plan.max_rps:g}", saturation)
            rate = min(rate * plan.growth, plan.max_rps)
        else:
            rate *= plan.backoff
            if rate * plan.step_seconds < 2:
                return Capacity(steps, "no rate was sustained, down to two requests a step", saturation)


def verdict(step: Step) -> str:
    if step.cut_short:
        return "cut short by the time bound"
    return "sustained" if step.sustained else "NOT sustained"


def evidence_table(capacity: Capacity) -> str:
    rows = [
        "| offered req/s | served req/s | sent | failed | p50 ms | p99 ms | sustained |",
        "|---|---|---|---|---|---|---|",
    ]
    rows += [
        f"| {s.offered_rps:.2f} | {s.served_rps:.2f} | {s.sent} | {s.failed} | {s.p50_ms:.0f} "
        f"| {s.p99_ms:.0f} | {verdict(s)} |"
        for s in capacity.steps
    ]
    return "\n".join(rows)


def write_target(stack_path: Path, value: int) -> None:
    """Replaces the value of `target_invocations_per_instance` in [autoscaling] and nothing else: comments,
    order and every other byte stay as they are."""
    lines = stack_path.read_text().splitlines(keepends=True)
    table = None
    key = re.compile(rf"^(\s*{TARGET_KEY}\s*=\s*)([^#\s]+)(.*)$", re.S)
    for index, line in enumerate(lines):
        header = re.match(r"^\s*\[([^\]]+)\]", line)
        if header:
            table = header.group(1).strip()
        elif table == "autoscaling" and (match := key.match(line)):
            lines[index] = f"{match.group(1)}{value}{match.group(3)}"
            temporary = stack_path.with_name(f".{stack_path.name}.tmp")
            temporary.write_text("".join(lines))
            os.replace(temporary, stack_path)
            return
    raise DeployError(f"{stack_path}: no {TARGET_KEY} in [autoscaling] to write")


def sender(args: argparse.Namespace, run: Run) -> tuple[Send, str]:
    """The one target the user named, and how to describe it."""
    if args.url:
        body = args.image.read_bytes()
        return http_sender(args.url, body, invoke.content_type(args.image), args.timeout), args.url
    if args.endpoint:
        return lambda: invoke.via_endpoint(run, args.image), f"endpoint {run.stack.endpoint_name}"
    return lambda: invoke.via_lambda(run, args.image), f"Lambda {run.stack.function_name}"


def arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a serving container's /invocations URL; the only address sent to")
    target.add_argument("--endpoint", action="store_true", help="the stack's endpoint, via sagemaker-runtime")
    target.add_argument(
        "--lambda", dest="function", action="store_true", help="the stack's Lambda, live alias"
    )
    parser.add_argument("--image", type=Path, required=True, help="the request body (its type from the name)")
    parser.add_argument("--p99-ms", type=float, required=True, help="latency goal for a sustained step")
    parser.add_argument("--safety-factor", type=float, default=0.5, help="default: 0.5, AWS's advice")
    parser.add_argument("--probe-concurrency", type=int, default=16, help="requests in flight in the probe")
    parser.add_argument("--probe-seconds", type=float, default=10.0)
    parser.add_argument("--step-seconds", type=float, default=15.0)
    parser.add_argument("--growth", type=float, default=1.25, help="next rate after a sustained step, x")
    parser.add_argument("--backoff", type=float, default=0.7, help="next rate after a failed step, x")
    parser.add_argument(
        "--precision", type=float, default=0.05, help="bisect until the bracket is this tight"
    )
    parser.add_argument("--max-seconds", type=float, default=180.0, help="the whole run's time bound")
    parser.add_argument("--max-rps", type=float, default=5000.0)
    parser.add_argument("--workers", type=int, default=64, help="most requests in flight in a step")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds (--url)")
    parser.add_argument("--write", action="store_true", help=f"write the value to [autoscaling] {TARGET_KEY}")
    parser.add_argument("--force", action="store_true", help="--write even a lower bound (no step failed)")


def loadtest(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy loadtest --stack STACK (--url URL | --endpoint | --lambda) --image JPEG --p99-ms MS

    Finds the highest request rate one instance sustains within --p99-ms (a closed-loop probe, open-loop
    steps that bracket the knee, bisection) and prints the auto-scaling target, rate x 60 x
    --safety-factor, with the evidence; --write puts it into the stack file. Sends only to the target
    named; stops by itself within --max-seconds."""
    if (
        args.growth <= 1
        or not 0 < args.backoff < 1
        or not 0 < args.safety_factor <= 1
        or args.precision <= 0
        or args.probe_concurrency < 1
    ):
        raise DeployError(
            "--growth must be above 1, --backoff in (0, 1), --safety-factor in (0, 1], --precision above 0, "
            "--probe-concurrency at least 1"
        )
    send, name = sender(args, run)
    if not args.url:
        # One call first: AWS that cannot be asked at all (no credentials, out of reach, no such
        # endpoint) fails the command with its own error, not as a search in which every step failed.
        send()
    print(f"loadtest: {name}, p99 goal {args.p99_ms:g} ms, at most {args.max_seconds:g} s", file=sys.stderr)
    plan = SearchPlan(
        p99_ms=args.p99_ms,
        step_seconds=args.step_seconds,
        probe_seconds=args.probe_seconds,
        max_seconds=args.max_seconds,
        max_rps=args.max_rps,
        growth=args.growth,
        backoff=args.backoff,
        precision=args.precision,
    )
    capacity = search(
        plan,
        lambda deadline: probe(send, args.probe_concurrency, args.probe_seconds, deadline),
        lambda rate, deadline: run_step(send, rate, args.step_seconds, deadline, args.p99_ms, args.workers),
        time.monotonic,
        sys.stderr,
    )
    print(evidence_table(capacity))
    if capacity.max_rps == 0:
        print(f"\nno step was sustained ({capacity.stopped}): raise --p99-ms, or check the target")
        return 1
    value = target_value(capacity.max_rps, args.safety_factor)
    print(
        f"\nclosed-loop saturation {capacity.saturation_rps:.2f} req/s; stopped: {capacity.stopped}. "
        f"Highest sustained rate {capacity.max_rps:.2f} req/s; "
        f"{TARGET_KEY} = {capacity.max_rps:.2f} x 60 x {args.safety_factor:g} = {value}"
    )
    if capacity.lower_bound:
        print(
            "LOWER BOUND: no step failed the goal, so the instance may sustain more; raise --max-seconds "
            "or --max-rps and run again"
        )
    if args.write:
        if capacity.lower_bound and not args.force:
            print(f"not written: {TARGET_KEY} from a lower bound needs --force")
            return 1
        write_target(args.stack, value)
        print(f"wrote {TARGET_KEY} = {value} to {args.stack}")
    return 0
