"""Where a lone request's milliseconds go: each step of the serving image's path timed in this process, the
sequential bound they add up to, and the served figure at concurrency 1 beside it.

    .venv/bin/python -m bench.latency --image kennel-serve:local                    # INT8, 3 rounds
    .venv/bin/python -m bench.latency --image kennel-serve:before --image kennel-serve:local --reps 3

Steps (median of many runs, one thread of control, the serving image's ONNX Runtime settings unless named):
decode (JPEG header and reduced-scale decode), preprocessing, the model at batch 1 with spinning off (as
served) and on, the answer (softmax, top-5, JSON), and one hand-off to a thread pool and back on the event
loop (uvloop), which the server pays per step it runs off the loop. Served: wrk at concurrency 1 (HTTP/1.1,
keep-alive) against the image's container (`--cpus=2`, host network), the server's CPU time and its threads'
time waiting for a CPU (the kernel's schedstat) per request, and the sequential bound (bench.serve's
`lone_request` back to back) measured just before and just after it, whose ratio to the served figure is
the lone request's share of the bound. With several images, the rounds interleave them, in turn first and
last.
"""

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import onnxruntime as ort
import uvloop
from kennel_serve.codecs import decode, read_header
from kennel_serve.model import ModelManifest

from bench import serve
from bench.standins import workspace

MAX_PIXELS = serve.MAX_PIXELS


def session(path: Path, spinning: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = serve.CPUS
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.enable_mem_pattern = False
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def timed_ms(step, repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def hop_ms(repeats: int) -> float:
    """One `run_in_executor` round trip of a no-op on uvloop: what a step off the event loop costs on top."""
    pool = ThreadPoolExecutor(max_workers=2)

    async def trips() -> float:
        loop = asyncio.get_running_loop()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            await loop.run_in_executor(pool, int)
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    try:
        return uvloop.run(trips())
    finally:
        pool.shutdown()


def steps(model_dir: Path, precision: str, jpeg: bytes, repeats: int) -> dict[str, float]:
    manifest = ModelManifest.read(model_dir)
    path = model_dir / manifest.models[precision]
    quiet, spinning = session(path, spinning=False), session(path, spinning=True)
    least = manifest.preprocessing.least_decode_size

    def decoded():
        return decode(read_header(jpeg, MAX_PIXELS), least)

    image = decoded()
    array = manifest.preprocessing(image)[None]
    (logits,) = quiet.run(None, {manifest.input_name: array})

    def answer():
        return serve.answer(logits, manifest.labels)

    return {
        "decode": timed_ms(decoded, repeats),
        "preprocess": timed_ms(
            lambda: manifest.preprocessing(decode(read_header(jpeg, MAX_PIXELS), least)), repeats
        )
        - timed_ms(decoded, repeats),
        "model_b1_spin_off": timed_ms(lambda: quiet.run(None, {manifest.input_name: array}), repeats),
        "model_b1_spin_on": timed_ms(lambda: spinning.run(None, {manifest.input_name: array}), repeats),
        "answer": timed_ms(answer, repeats),
        "thread_hop": hop_ms(repeats * 10),
        "sequential_bound": timed_ms(lambda: serve.lone_request(quiet, manifest, jpeg), repeats),
    }


def process_tree(pid: int) -> list[int]:
    """`pid` and every process under it: the container's server, whether one process or a supervisor and
    its workers."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree, grown = [pid], True
    while grown:
        children = [child for child, parent in parents.items() if parent in tree and child not in tree]
        tree, grown = tree + children, bool(children)
    return tree


def waiting_seconds(pid: int) -> float:
    """Seconds the server's threads have spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat,
    second field, over `pid`'s process tree): the scheduler's share of a request's latency, which CPU time
    does not show."""
    total = 0
    for process in process_tree(pid):
        for stat in Path(f"/proc/{process}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(stat.read_text().split()[1])
    return total / 1e9


def served(
    image: str, model_dir: Path, precision: str, jpegs: list[bytes], body: Path, seconds: float
) -> dict:
    environment = {"KENNEL_PRECISION": precision}
    running = serve.start_kennel(
        docker.from_env(), image, model_dir, serve.Server(image, "kennel", environment)
    )
    bound = serve.sequential_bound(model_dir, precision, jpegs[0])
    try:
        serve.wait_ready(running, jpegs[0], time.perf_counter())
        serve.warm_up(running.predict_url, body, levels=(1,))
        before = bound(serve.BOUND_SECONDS)
        cpu_before, pid = running.cpu_seconds(), running.pid()
        wait_before = waiting_seconds(pid)
        point = serve.run_load(running.predict_url, body, 1, seconds)
        point["sequential_bound_rps"] = (before + bound(serve.BOUND_SECONDS)) / 2
        requests = max(1, point["requests"])
        point["server_wait_ms"] = 1000 * (waiting_seconds(pid) - wait_before) / requests
        point["server_cpu_ms"] = 1000 * (running.cpu_seconds() - cpu_before) / requests
        point["mean_ms"] = 1000 / point["rps"]
        return point
    finally:
        running.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", action="append", help="serving image(s) to measure at concurrency 1")
    parser.add_argument("--precision", default="int8", choices=["int8", "fp32"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk's seconds per served point")
    parser.add_argument("--repeats", type=int, default=200, help="runs per in-process step")
    parser.add_argument("--model-dir", type=Path, help="a benchmark model directory to reuse")
    parser.add_argument("--note", default="", help="what the images differ in, for the report")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict = {"precision": args.precision, "note": args.note, "rounds": []}
    with tempfile.TemporaryDirectory(prefix="kennel-latency-") as tmp:
        work = Path(tmp)
        jpegs, body, model_dir = workspace(work, args.model_dir)
        for rep in range(args.reps):
            round_ = {"steps": steps(model_dir, args.precision, jpegs[0], args.repeats), "served": {}}
            images = args.image or []
            # A B, then B A: a machine whose load drifts within a round weighs on each image alike.
            for image in images if rep % 2 == 0 else images[::-1]:
                round_["served"][image] = served(image, model_dir, args.precision, jpegs, body, args.seconds)
            results["rounds"].append(round_)
            print(f"round {rep + 1}: " + json.dumps(round_, default=lambda v: round(v, 2)), flush=True)
    report(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


def report(results: dict) -> None:
    rounds = results["rounds"]
    print(f"\n{results['precision']}: medians over {len(rounds)} round(s), ms")
    for key in rounds[0]["steps"]:
        values = [r["steps"][key] for r in rounds]
        print(f"  {key:<20} {statistics.median(values):7.2f}  ({min(values):.2f}-{max(values):.2f})")
    for image in rounds[0]["served"]:
        points = [r["served"][image] for r in rounds]
        mean = statistics.median(p["mean_ms"] for p in points)
        bound = statistics.median(1000 / p["sequential_bound_rps"] for p in points)
        share = statistics.median(p["rps"] / p["sequential_bound_rps"] for p in points)
        print(
            f"  served by {image}: {1000 / mean:.1f} req/s, mean {mean:.2f} ms, p50 "
            f"{statistics.median(p['p50'] for p in points):.0f}, "
            f"p99 {statistics.median(p['p99'] for p in points):.0f} ms, "
            f"server CPU {statistics.median(p['server_cpu_ms'] for p in points):.1f} ms and waiting for a "
            f"CPU {statistics.median(p.get('server_wait_ms', math.nan) for p in points):.1f} ms per request; "
            f"{share:.2f} of the sequential bound measured around it ({1000 / bound:.1f}/s, median of the "
            f"rounds' paired ratios); {mean - bound:.2f} ms above it"
        )


if __name__ == "__main__":
    main()
