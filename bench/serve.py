"""Serving benchmark: Kennel's serving image, TorchServe 0.12 (defaults and tuned) and the in-process ONNX
Runtime ceilings, side by side on this machine, in one run, with BentoML and LitServe serving the same ONNX
files (bench/peers/); writes raw results as JSON.

    make bench                                                                  # everything, then the report
    .venv/bin/python -m bench.serve --out bench/results/serving.json            # what make bench runs
    .venv/bin/python -m bench.serve --seconds 3 --reps 1 --out /tmp/serving.json   # a quick look

Needs the built serving image (`make build`), wrk (`scripts/setup.sh loadgen`), Java 17 and
bench/requirements.txt in .venv. The model is torchvision's ResNet-50 with random weights (seed 0) and 133
classes, written by the training image's own export code; TorchServe serves a TorchScript trace of the same
weights; BentoML and LitServe serve the same ONNX files with the serving image's decoding and preprocessing,
each from its own environment under .kennel/ (made at start when missing). Every server gets the same two
cores: Kennel's container with `--cpus=2` on the host network, TorchServe and the peers on the host under
`taskset -c 0-1`; all answer on 127.0.0.1 only, and the load generator (wrk, HTTP/1.1 keep-alive) runs on
the same cores. Each repetition starts every server afresh (that start is the cold-start figure), warms it
up, then measures concurrency 1, 4 and 16; the repetitions interleave the servers (A B C A B C ...) and the
in-process ceilings. Kennel fp32, Kennel INT8 and the tuned TorchServe then take the payload-size axis at
concurrency 16: a 2 MP and a 12 MP photo stand-in (bench/photos.py). Last, `python -m deploy loadtest` with
its default flags runs against a fresh Kennel INT8 container, next to wrk's concurrency-16 figure on the
same container.
"""

import argparse
import io
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import docker
import httpx
import numpy as np
import onnxruntime as ort
import torch
from kennel_serve.codecs import ENCODERS, JSON, decode, read_header, top_predictions
from kennel_serve.model import ModelManifest
from PIL import Image

from bench import photos, standins
from bench import torchserve_host as torchserve
from bench.peers import host as peers
from bench.peers.host import PeerTuning
from bench.standins import CLASSES, make_jpegs

ROOT = Path(__file__).resolve().parent.parent

CONCURRENCY = (1, 4, 16)
CPUS = 2
# TorchServe's best configuration at concurrency 16 in a sweep on this machine (8 s per point, req/s at
# concurrency 4 / 16): 1 worker, OMP 2, batch 8 / 20 ms: 17.7 / 15.9; batch 1: 15.8 / 15.0; batch 16 / 50 ms:
# 15.5 / 13.1; 2 workers, OMP 1, batch 1: 18.5 / 18.3; 2 workers, OMP 1, batch 4 / 10 ms: 10.5 / 19.2.
TORCHSERVE_TUNED = torchserve.Tuning(workers=2, batch_size=4, max_batch_delay_ms=10, omp_threads=1)
SWEEP_NOTE = (
    "chosen as TorchServe's best at concurrency 16 in a sweep on this machine: 1 or 2 workers, "
    "OMP_NUM_THREADS 2 or 1, batchSize 1 to 16, maxBatchDelay 0 to 50 ms (the figures are in bench/serve.py)"
)
# The peers' best configurations at concurrency 16 per precision: the highest median req/s of
# `python -m bench.peers.sweep --seconds 5 --reps 2` on this machine with wrk (bench/results/peers_sweep.json,
# rendered in docs/benchmarks.md). Tried: workers x ONNX Runtime threads 1x2, 2x1, 1x1, max_batch_size 4, 8,
# 16, and for LitServe batch_timeout 0 or 10 ms. One process per core won for both peers and both precisions.
PEERS_TUNED = {
    ("bentoml", "fp32"): PeerTuning("bentoml", workers=2, ort_threads=1, max_batch_size=16),
    ("bentoml", "int8"): PeerTuning("bentoml", workers=2, ort_threads=1, max_batch_size=8),
    ("litserve", "fp32"): PeerTuning(
        "litserve", workers=2, ort_threads=1, max_batch_size=8, batch_wait_ms=10
    ),
    ("litserve", "int8"): PeerTuning("litserve", workers=2, ort_threads=1, max_batch_size=16),
}
CEILING_BATCHES = (1, 8)
# Seconds of the sequential bound measured just before and just after a Kennel server's concurrency-1 point.
BOUND_SECONDS = 3.0
MAX_PIXELS = 40_000_000
# The payload-size axis: phone photos as users send them (bench/photos.py), at concurrency 16, on these.
LARGE_PAYLOADS = {"2 MP": (1632, 1224), "12 MP": (4032, 3024)}
PAYLOAD_SERVERS = ("Kennel fp32", "Kennel INT8", "TorchServe tuned")
PAYLOAD_CONCURRENCY = 16
LOADTEST_P99_MS = 500


@dataclass(frozen=True)
class Server:
    name: str
    kind: str  # "kennel", "torchserve", "bentoml" or "litserve"
    environment: dict[str, str] = field(default_factory=dict)
    tuning: torchserve.Tuning | None = None
    peer: PeerTuning | None = None
    precision: str = "fp32"


@dataclass
class Running:
    predict_url: str
    ping_url: str
    stop: Callable[[], None]
    memory_bytes: Callable[[], int]
    logs: Callable[[], str] = lambda: ""
    cpu_seconds: Callable[[], float] = lambda: math.nan  # CPU time the server has used so far
    pid: Callable[[], int | None] = lambda: None  # the server's main process, as this host sees it


def configurations(int8: bool) -> list[Server]:
    precisions = ("fp32", "int8") if int8 else ("fp32",)
    servers = [Server("Kennel fp32", "kennel", {"KENNEL_PRECISION": "fp32"})]
    if int8:
        servers.append(Server("Kennel INT8", "kennel", precision="int8"))
    return [
        *servers,
        Server("TorchServe default", "torchserve", tuning=torchserve.Tuning()),
        Server("TorchServe tuned", "torchserve", tuning=TORCHSERVE_TUNED),
        *(
            Server(
                f"{peers.NAMES[kind]} {precision.replace('int8', 'INT8')}",
                kind,
                peer=PEERS_TUNED[kind, precision],
                precision=precision,
            )
            for kind in peers.PEERS
            for precision in precisions
        ),
    ]


def describe(server: Server) -> str | None:
    if server.peer is not None:
        return f"{server.peer.describe()}; the best at concurrency 16 in `python -m bench.peers.sweep` here"
    if server.tuning == TORCHSERVE_TUNED:
        return f"{server.tuning.describe()}; {SWEEP_NOTE}"
    return server.tuning.describe() if server.tuning else None


def session(path: Path, memory_pattern: bool = False) -> ort.InferenceSession:
    """The serving image's ONNX Runtime settings: intra-op threads = cores, sequential, no spinning, no
    memory pattern (`memory_pattern=True`: ONNX Runtime's default, the serving image's before)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = CPUS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_mem_pattern = memory_pattern
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def images_per_second(step: Callable[[], object], batch: int, seconds: float) -> float:
    step()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        done += batch
    return done / (time.perf_counter() - started)


def pipeline(runner: ort.InferenceSession, manifest: ModelManifest, jpeg: bytes, batch: int) -> np.ndarray:
    """Decode, preprocess, one ONNX Runtime call for the batch, softmax: the serving image's work per "
    "batch."""
    arrays = [manifest.preprocessing(Image.open(io.BytesIO(jpeg))) for _ in range(batch)]
    (logits,) = runner.run(None, {manifest.input_name: np.stack(arrays)})
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def lone_request(runner: ort.InferenceSession, manifest: ModelManifest, jpeg: bytes) -> bytes:
    """What the serving image does for a lone request, on one thread: the JPEG's header and its (reduced-scale
    where possible) decode, preprocessing, the model at batch 1, softmax, the top 5 as JSON."""
    image = decode(read_header(jpeg, MAX_PIXELS), manifest.preprocessing.least_decode_size)
    (logits,) = runner.run(None, {manifest.input_name: manifest.preprocessing(image)[np.newaxis]})
    return answer(logits, manifest.labels)


def answer(logits: np.ndarray, labels: tuple[str, ...]) -> bytes:
    """The serving image's answer to a request: softmax, the top 5 as JSON."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return ENCODERS[JSON](top_predictions(shifted / shifted.sum(axis=1, keepdims=True), labels, 5))


def sequential_bound(model_dir: Path, precision: str, jpeg: bytes) -> Callable[[float], float]:
    """Requests/s of `lone_request` back to back, for the seconds given, with the serving image's ONNX Runtime
    settings: the bound that a server at concurrency 1 approaches from below."""
    manifest = ModelManifest.read(model_dir)
    runner = session(model_dir / manifest.models[precision])
    return lambda seconds: images_per_second(partial(lone_request, runner, manifest, jpeg), 1, seconds)


def ceilings(model_dir: Path, jpeg: bytes, seconds: float) -> dict[str, float]:
    """Images/s in one process, per model file and batch size: the model alone on a preprocessed batch, and
    the whole pipeline."""
    manifest = ModelManifest.read(model_dir)
    results = {}
    for precision, filename in json.loads((model_dir / "manifest.json").read_text())["models"].items():
        runner = session(model_dir / filename)
        for batch in CEILING_BATCHES:
            ready = np.stack([manifest.preprocessing(Image.open(io.BytesIO(jpeg)))] * batch)
            model_only = partial(runner.run, None, {manifest.input_name: ready})
            results[f"{precision} model b{batch}"] = images_per_second(model_only, batch, seconds)
            whole = partial(pipeline, runner, manifest, jpeg, batch)
            results[f"{precision} pipeline b{batch}"] = images_per_second(whole, batch, seconds)
    # The fp32 model with ONNX Runtime's memory pattern on, as served before: its throughput cost.
    runner = session(model_dir / "model.onnx", memory_pattern=True)
    ready = np.stack([manifest.preprocessing(Image.open(io.BytesIO(jpeg)))] * CEILING_BATCHES[-1])
    model_only = partial(runner.run, None, {manifest.input_name: ready})
    results[f"fp32+pattern model b{CEILING_BATCHES[-1]}"] = images_per_second(
        model_only, CEILING_BATCHES[-1], seconds
    )
    return results


def wrk_script(body: Path) -> Path:
    """wrk's Lua script beside `body`: POST it as image/jpeg."""
    lines = [
        f"local file = assert(io.open({json.dumps(str(body))}, 'rb'))",
        "wrk.method, wrk.body = 'POST', file:read('*a')",
        "file:close()",
        "wrk.headers['Content-Type'] = 'image/jpeg'",
    ]
    script = body.with_suffix(".lua")
    script.write_text("\n".join(lines) + "\n")
    return script


def wrk_ms(out: str, percent: int) -> float:
    """A latency percentile from wrk's --latency table, in ms."""
    match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if match is None:  # no answer at all
        return math.nan
    return float(match[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[match[2]]


def children_cpu_seconds() -> float:
    """User plus system CPU seconds of every child process that has ended so far (wrk, the load test)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_load(url: str, body: Path, concurrency: int, seconds: float) -> dict[str, float]:
    """wrk for `seconds`: `concurrency` HTTP/1.1 connections, each sending the next request when the last
    is answered (closed loop), kept alive as production clients keep them. Its own CPU time comes from
    getrusage of children. ab is not used: it speaks HTTP/1.0, and uvicorn closes an HTTP/1.0 connection
    after every answer, so each request would pay for a new TCP connection on Kennel and on both peers."""
    before = children_cpu_seconds()
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "120s",
               "--latency", "-s", str(wrk_script(body)), url]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    client_cpu_s = children_cpu_seconds() - before
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
        "requests": int(re.search(r"(\d+) requests in", out)[1]),
        "p50": wrk_ms(out, 50),
        "p99": wrk_ms(out, 99),
        "failed": int(non_2xx[1] if non_2xx else 0) + sum(map(int, errors.groups() if errors else ())),
        "client_cpu_s": client_cpu_s,
        "client": "wrk",  # results from before carry no such field: ab measured them
    }


def start_kennel(
    client: docker.DockerClient, image: str, model_dir: Path, server: Server, **limits: Any
) -> Running:
    """Kennel's container with `--cpus=2`, unless `limits` (docker SDK run arguments) say otherwise."""
    port = torchserve.free_port()
    limits = {"nano_cpus": CPUS * 10**9, **limits}
    container = client.containers.run(
        image,
        ["serve"],
        detach=True,
        name=f"kennel-serve-bench-{uuid.uuid4().hex[:8]}",
        volumes={str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}},
        # The host network, like TorchServe on the host: no docker-proxy copying every body.
        network_mode="host",
        environment={"SAGEMAKER_BIND_TO_PORT": str(port), **server.environment},
        **limits,
    )

    def memory_bytes() -> int:
        stats = container.stats(stream=False)["memory_stats"]
        return stats.get("stats", {}).get("rss", stats.get("usage", 0))  # cgroup v1: anonymous memory

    base = f"http://127.0.0.1:{port}"
    running = Running(
        f"{base}/invocations", f"{base}/ping", lambda: container.remove(force=True), memory_bytes
    )
    running.logs = lambda: container.logs().decode(errors="replace")
    running.pid = lambda: client.api.inspect_container(container.id)["State"]["Pid"]
    running.cpu_seconds = lambda: container.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
    return running


def start_torchserve(mar: Path, server: Server, home: Path) -> Running:
    running = torchserve.start(mar, server.tuning, f"0-{CPUS - 1}", home)
    return Running(running.predict_url, f"{running.url}/ping", running.stop, running.rss_bytes)


def start_peer(model_dir: Path, server: Server, home: Path) -> Running:
    running = peers.start(server.peer, model_dir, server.precision, f"0-{CPUS - 1}", home)
    return Running(
        running.predict_url,
        running.ping_url,
        running.stop,
        running.rss_bytes,
        cpu_seconds=running.cpu_seconds,
    )


def wait_ready(running: Running, jpeg: bytes, started: float, timeout_s: float = 180) -> dict[str, Any]:
    """Seconds from start to the first 200 on /ping and to the first 200 prediction."""
    return standins.wait_ready(running.ping_url, running.predict_url, jpeg, started, timeout_s)


def top1(running: Running, jpegs: list[bytes]) -> list[int]:
    """Each image's most likely class index as the server answers it."""
    indices = []
    for jpeg in jpegs:
        answer = httpx.post(
            running.predict_url, content=jpeg, headers={"Content-Type": "image/jpeg"}, timeout=60
        )
        answer.raise_for_status()
        body = answer.json()
        body = body[0] if isinstance(body, list) else body  # BentoML answers a batch axis of one
        first = body["predictions"][0][0]["index"] if "predictions" in body else next(iter(body))
        indices.append(int(first.removeprefix("class_")) if isinstance(first, str) else first)
    return indices


def reference_top1(model_dir: Path, jpegs: list[bytes]) -> list[int]:
    manifest = ModelManifest.read(model_dir)
    batch = np.stack([manifest.preprocessing(Image.open(io.BytesIO(jpeg))) for jpeg in jpegs])
    (logits,) = session(model_dir / "model.onnx").run(None, {manifest.input_name: batch})
    return [int(i) for i in logits.argmax(axis=1)]


def warm_up(url: str, body: Path, requests: int = 24, levels: tuple[int, ...] = (4, 16)) -> None:
    """A fixed number of requests at concurrency 4 and 16, not recorded: TorchScript's profiling executor
    optimises a model on its first calls for each batch shape, and every server gets the same count."""
    data = body.read_bytes()
    with httpx.Client(timeout=600) as client:

        def post(_: int) -> None:
            client.post(url, content=data, headers={"Content-Type": "image/jpeg"})

        for concurrency in levels:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                list(pool.map(post, range(requests)))


def measure(
    running: Running, started: float, jpegs: list[bytes], body: Path, seconds: float,
    bound: Callable[[float], float] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Cold start, top-1 agreement and each concurrency point; with `bound`, the sequential bound just
    before and just after the concurrency-1 point, so that the two share the machine's state of the moment."""
    result = wait_ready(running, jpegs[0], started)
    result["top1"] = top1(running, jpegs[:8])
    warm_up(running.predict_url, body)
    result["points"] = {}
    for concurrency in CONCURRENCY:
        before = bound(BOUND_SECONDS) if bound and concurrency == 1 else None
        result["points"][concurrency] = run_load(running.predict_url, body, concurrency, seconds)
        if before is not None:
            result["points"][concurrency]["sequential_bound_rps"] = (before + bound(BOUND_SECONDS)) / 2
        print(f"    c={concurrency}: {result['points'][concurrency]}", flush=True)
    result["memory_bytes"] = running.memory_bytes()
    return result


def measure_payloads(running: Running, bodies: dict[str, Path], seconds: float) -> dict[str, Any]:
    """Concurrency 16 with each large payload (after 16 unrecorded requests of it), then the memory."""
    result: dict[str, Any] = {}
    for name, body in bodies.items():
        warm_up(running.predict_url, body, requests=PAYLOAD_CONCURRENCY, levels=(PAYLOAD_CONCURRENCY,))
        result[name] = run_load(running.predict_url, body, PAYLOAD_CONCURRENCY, seconds)
        print(f"    {name} c={PAYLOAD_CONCURRENCY}: {result[name]}", flush=True)
    result["memory_bytes"] = running.memory_bytes()
    return result


def loadtest(
    client: docker.DockerClient, image: str, model_dir: Path, server: Server, jpegs: list[bytes], body: Path,
    seconds: float, work: Path,
) -> dict[str, Any]:  # fmt: skip
    """`python -m deploy loadtest` with its default flags against a fresh container, and wrk's concurrency
    16 on the same container just before it."""
    running = start_kennel(client, image, model_dir, server)
    try:
        wait_ready(running, jpegs[0], time.perf_counter())
        warm_up(running.predict_url, body)
        closed = run_load(running.predict_url, body, 16, seconds)
        stack = work / "stack.toml"
        stack.write_text((ROOT / "deploy" / "stack.example.toml").read_text())
        command = [sys.executable, "-m", "deploy", "loadtest", "--stack", str(stack), "--url",
                   running.predict_url, "--image", str(body), "--p99-ms", str(LOADTEST_P99_MS)]  # fmt: skip
        started, before = time.perf_counter(), children_cpu_seconds()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
        elapsed, client_cpu_s = time.perf_counter() - started, children_cpu_seconds() - before
    finally:
        running.stop()
    print(done.stderr + done.stdout, flush=True)
    rate = re.search(r"Highest sustained rate ([\d.]+) req/s", done.stdout)
    saturation = re.search(r"closed-loop saturation ([\d.]+) req/s", done.stdout)
    return {
        "server": server.name,
        "command": "python -m deploy loadtest --stack STACK --url URL --image IMAGE "
        f"--p99-ms {LOADTEST_P99_MS}",
        "exit_code": done.returncode,
        "rps": float(rate.group(1)) if rate else 0.0,
        "saturation_rps": float(saturation.group(1)) if saturation else 0.0,
        "lower_bound": "LOWER BOUND" in done.stdout,
        "seconds": elapsed,
        # The load test's own CPU: it runs on the server's cores, as wrk does.
        "client_cpu_s": client_cpu_s,
        "closed_c16_rps": closed["rps"],
        "closed_c16_client_cpu_s": closed["client_cpu_s"],
        "closed_c16_seconds": seconds,
        "closed_c16_p99": closed["p99"],
        "output": done.stdout,
    }


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def footprints(client: docker.DockerClient, image: str) -> dict[str, int]:
    """Bytes on disk: Kennel's image, and TorchServe as installed here, by part."""
    site = Path(torch.__file__).parent.parent
    java_home = Path(os.path.realpath("/usr/bin/java")).parent.parent
    parts = {
        "kennel_image": client.images.get(image).attrs["Size"],
        "torchserve_jre": folder_bytes(java_home),
    }
    for name in ("ts", "model_archiver", "torch", "torchvision", "nvidia"):
        if (site / name).is_dir():
            parts[f"torchserve_{name}"] = folder_bytes(site / name)
    return parts


def peer_versions() -> dict[str, str]:
    """The peers' versions, as pinned in their requirements files (what their environments hold)."""
    versions = {}
    for kind in peers.PEERS:
        pins = peers.requirements(kind).read_text()
        versions[kind] = re.search(rf"^{kind}==(\S+)$", pins, re.M).group(1)
    return versions


def machine() -> dict[str, Any]:
    cpu = re.search(r"Model name:\s+(.+)", subprocess.run(["lscpu"], capture_output=True, text=True).stdout)
    memory = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    return {
        "cpu": cpu.group(1) if cpu else platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory.group(1)) / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "docker_server": docker.from_env().version()["Version"],
        "java": java,
        "versions": {
            name: metadata.version(name)
            for name in ("onnxruntime", "torch", "torchvision", "torchserve", "torch-model-archiver")
        }
        | peer_versions(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="per concurrency point")
    parser.add_argument("--ceiling-seconds", type=float, default=4.0, help="per ceiling measurement")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--image", default="kennel-serve:local")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip-loadtest", action="store_true", help="leave out the 3-minute loadtest run")
    args = parser.parse_args()

    client = docker.from_env()
    peers.install()
    results: dict[str, Any] = {"seconds": args.seconds, "machine": machine(), "load_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="kennel-bench-") as tmp:
        work = Path(tmp)
        jpegs = make_jpegs(16)
        paths = [work / f"image-{i:02d}.jpg" for i in range(len(jpegs))]
        for path, jpeg in zip(paths, jpegs, strict=True):
            path.write_bytes(jpeg)
        large = {
            name: photos.jpeg(photos.photo(index, *size))
            for index, (name, size) in enumerate(LARGE_PAYLOADS.items())
        }
        bodies = {name: work / f"payload-{name.replace(' ', '')}.jpg" for name in large}
        for name, data in large.items():
            bodies[name].write_bytes(data)
        results["payload_bytes"] = {"500x375": len(jpegs[0])} | {
            name: len(data) for name, data in large.items()
        }
        model, model_dir, quantization = standins.make_model(work, paths)
        results["quantization"] = quantization
        results["jpeg_bytes"] = [len(jpeg) for jpeg in jpegs]
        results["reference_top1"] = reference_top1(model_dir, jpegs[:8])
        servers = configurations(quantization is not None and quantization.get("written", False))
        labels = [f"class_{i:03d}" for i in range(CLASSES)]
        store = work / "model-store"
        mars = {
            server.name: torchserve.archive(model, labels, server.tuning, f"ts-{index}", store, work / "ts")
            for index, server in enumerate(servers)
            if server.kind == "torchserve"
        }
        results["servers"] = {server.name: {"tuning": describe(server), "runs": []} for server in servers}
        results["ceilings"] = []
        for rep in range(args.reps):
            for server in servers:
                print(f"rep {rep + 1}/{args.reps}: {server.name}", flush=True)
                bound = None
                if server.kind == "kennel":
                    bound = sequential_bound(model_dir, server.precision, jpegs[0])
                started = time.perf_counter()
                if server.kind == "kennel":
                    running = start_kennel(client, args.image, model_dir, server)
                elif server.peer is not None:
                    running = start_peer(model_dir, server, work / f"peer-{uuid.uuid4().hex[:8]}")
                else:
                    running = start_torchserve(mars[server.name], server, work / f"ts-{uuid.uuid4().hex[:8]}")
                try:
                    run = measure(running, started, jpegs, paths[0], args.seconds, bound)
                    if server.name in PAYLOAD_SERVERS:
                        run["payloads"] = measure_payloads(running, bodies, args.seconds)
                finally:
                    running.stop()
                results["servers"][server.name]["runs"].append(run)
            results["ceilings"].append(ceilings(model_dir, jpegs[0], args.ceiling_seconds))
            print(f"rep {rep + 1}/{args.reps}: ceilings {results['ceilings'][-1]}", flush=True)
        int8 = [server for server in servers if server.name == "Kennel INT8"]
        if int8 and not args.skip_loadtest:
            print("loadtest: Kennel INT8, default flags", flush=True)
            results["loadtest"] = loadtest(
                client, args.image, model_dir, int8[0], jpegs, paths[0], args.seconds, work
            )
    results["footprints"] = footprints(client, args.image)
    results["load_end"] = os.getloadavg()
    results["median_ceiling"] = {
        key: statistics.median(run[key] for run in results["ceilings"]) for key in results["ceilings"][0]
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
