"""Soak: the compose stack's serving container, then the same traffic through its proxy, at concurrency 16 for
10 minutes each, with good images, bad images and hostile JSON bodies; writes raw results as JSON.

    make soak                                                            # build, run (~25 min), write the doc
    .venv/bin/python -m bench.soak --out bench/results/soak.json         # what make soak runs
    .venv/bin/python -m bench.soak --minutes 1 --window-s 10 --out /tmp/soak.json   # a quick look

Needs the built images (KENNEL_TAG selects them, as for docker compose). It brings up its own compose project
on free ports (training the small synthetic model first), and takes it down with its volumes at the end.
Each window (a minute by default) it records the requests answered, their statuses, the p99 latency, and
the resident memory, open file descriptors and threads of every process in the serving (and proxy)
container, read from the host's /proc. Every request has one expected status (200 for a good image, 400 for
the rest); any other answer is counted as unexpected, and any 5xx is a failure of the soak.
"""

import argparse
import base64
import io
import json
import os
import random
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
from kennel_train.synthetic import draw_image
from PIL import Image

from tests.common.hostile_json import SHAPES
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Probe:
    """One request of the mix: what it is, how it is sent, and the status it must get."""

    kind: str
    body: bytes
    content_type: str
    expected: int


def jpegs(count: int) -> list[bytes]:
    images = []
    for seed in range(count):
        image = draw_image(seed % 5, 5, 400, random.Random(seed)).crop((0, 0, 400, 300))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def bomb_png() -> bytes:
    """A small PNG whose header claims 20000 x 20000 pixels: refused before decoding."""
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, "PNG")
    return buffer.getvalue()


def hostile_json() -> dict[str, bytes]:
    """Bodies whose structure, not their content, is the attack: a few classic ones, and the strict-JSON
    reader's cost corpus at 1 MB (the shapes that were quadratic before among them)."""
    return {
        **{f"{name}, 1 MB": shape(1 << 20).encode() for name, shape in SHAPES.items()},
        "deep nesting": b"[" * 50_000 + b"]" * 50_000,
        "many values": b"[" + b"0," * 300_000 + b"0]",
        "long number": b'{"instances": ' + b"9" * 100_000 + b"}",
        "duplicate keys": b'{"instances": [], "instances": [{"b64": "aGk="}]}',
        "NaN": b'{"instances": NaN}',
        "invalid UTF-8": b'{"instances": [{"b64": "\xff\xfe"}]}',
        "lone surrogate": b'{"instances": [{"b64": "\\ud800"}]}',
    }


MIX_WEIGHTS = {"good": 0.7, "bad image": 0.15, "hostile": 0.15}


def _mix(images: list[bytes], good_json: dict, more_hostile: list[Probe]) -> dict[str, list[Probe]]:
    good = [Probe("good image", image, "image/jpeg", 200) for image in images]
    good.append(Probe("good JSON", json.dumps(good_json).encode(), "application/json", 200))
    bad = [
        Probe("truncated JPEG", images[1][: len(images[1]) // 3], "image/jpeg", 400),
        Probe("random bytes", random.Random(3).randbytes(20_000), "image/jpeg", 400),
        Probe("pixel bomb", bomb_png(), "image/png", 400),
    ]
    hostile = [Probe(kind, body, "application/json", 400) for kind, body in hostile_json().items()]
    return {"good": good, "bad image": bad, "hostile": hostile + more_hostile}


def serve_mix(images: list[bytes]) -> dict[str, list[Probe]]:
    """The serving container's own request shapes, JSON Lines included."""
    lines = Probe("JSON Lines, 5000 lines", b'{"b64": "aGk="}\n' * 5000, "application/jsonlines", 400)
    return _mix(images, {"instances": [{"b64": base64.b64encode(images[0]).decode()}]}, [lines])


def proxy_mix(images: list[bytes]) -> dict[str, list[Probe]]:
    """The Lambda's request shapes, through the local adapter."""
    return _mix(images, {"image": base64.b64encode(images[0]).decode()}, [])


def processes(container: Any) -> dict[str, int]:
    """Resident memory, open file descriptors and threads summed over the container's processes."""
    container.reload()
    totals = {"rss_bytes": 0, "fds": 0, "threads": 0}
    for row in container.top(ps_args="-e -o pid")["Processes"]:
        pid = row[0]
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            fields = dict(line.split(":", 1) for line in status if ":" in line)
            totals["rss_bytes"] += int(fields["VmRSS"].split()[0]) * 1024
            totals["threads"] += int(fields["Threads"])
            totals["fds"] += len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, KeyError, ValueError):
            continue  # a process that ended between the listing and the read
    return totals


@dataclass
class Window:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def soak(url: str, mix: dict[str, list[Probe]], containers: dict[str, Any], args: argparse.Namespace) -> dict:
    """Sends the mix from `args.concurrency` threads for `args.minutes`; samples the containers per window."""
    windows_count = max(1, round(args.minutes * 60 / args.window_s))
    windows = [Window() for _ in range(windows_count)]
    unexpected: Counter = Counter()
    by_kind: dict[str, Counter] = {}
    lock = threading.Lock()
    before = {name: processes(c) for name, c in containers.items()}
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    deadline = started + windows_count * args.window_s

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=args.timeout_s) as http:
            while (now := time.monotonic()) < deadline:
                (category,) = rng.choices(list(MIX_WEIGHTS), weights=list(MIX_WEIGHTS.values()))
                probe = rng.choice(mix[category])
                try:
                    response = http.post(
                        url, content=probe.body, headers={"Content-Type": probe.content_type}
                    )
                    status = response.status_code
                except httpx.HTTPError as err:
                    status = f"no answer ({type(err).__name__})"
                elapsed = time.monotonic() - now
                index = min(int((now - started) / args.window_s), windows_count - 1)
                with lock:
                    windows[index].latencies.append(elapsed)
                    windows[index].statuses[str(status)] += 1
                    by_kind.setdefault(probe.kind, Counter())[str(status)] += 1
                    if status != probe.expected:
                        unexpected[f"{probe.kind}: {status}"] += 1

    samples: list[dict[str, dict[str, int]]] = []

    def sampler() -> None:
        for index in range(windows_count):
            time.sleep(max(0.0, started + (index + 1) * args.window_s - time.monotonic()))
            samples.append({name: processes(c) for name, c in containers.items()})

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(args.concurrency)]
    threads.append(threading.Thread(target=sampler))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(2)  # let the servers settle before the last reading
    after = {name: processes(c) for name, c in containers.items()}
    statuses = sum((w.statuses for w in windows), Counter())
    return {
        "url": url,
        "concurrency": args.concurrency,
        "window_s": args.window_s,
        "seconds": round(time.monotonic() - started, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(n for s, n in statuses.items() if s.isdigit() and int(s) >= 500),
        "unexpected": dict(unexpected.most_common()),
        "by_kind": {kind: dict(counts) for kind, counts in sorted(by_kind.items())},
        "windows": [
            {
                "minute": index + 1,
                "requests": len(window.latencies),
                "statuses": dict(sorted(window.statuses.items())),
                "p99_ms": round(p99(window.latencies) * 1000, 1) if window.latencies else None,
                "processes": samples[index] if index < len(samples) else None,
            }
            for index, window in enumerate(windows)
        ],
        "before": before,
        "after": after,
    }


def compose(project: str, env: dict[str, str], *args: str, timeout: float = 900) -> None:
    subprocess.run(
        ["docker", "compose", "-p", project, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        timeout=timeout,
    )


def container(client: docker.DockerClient, project: str, service: str) -> Any:
    labels = [f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]
    (found,) = client.containers.list(filters={"label": labels})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="per phase")
    parser.add_argument("--window-s", type=float, default=60.0, help="one row of the table")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout-s", type=float, default=30.0, help="client timeout per request")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()

    client = docker.from_env()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    project = f"kennel-soak-{uuid.uuid4().hex[:8]}"
    serve_port, proxy_port = free_port(), free_port()
    tag = os.environ.get("KENNEL_TAG", "local")
    with tempfile.TemporaryDirectory() as empty:
        env = {
            "KENNEL_SERVE_PORT": str(serve_port),
            "KENNEL_PROXY_PORT": str(proxy_port),
            "KENNEL_DATA": empty,
        }
        images = jpegs(8)
        try:
            compose(project, env, "up", "--detach", "--wait", "--no-build")
            containers = {"serve": container(client, project, "serve")}
            print(f"soak: {project} up; the serving container for {args.minutes:g} min", flush=True)
            direct = soak(f"http://127.0.0.1:{serve_port}/invocations", serve_mix(images), containers, args)
            print(json.dumps({k: direct[k] for k in ("requests", "statuses", "unexpected")}), flush=True)
            containers["proxy"] = container(client, project, "proxy")
            print(f"soak: the proxy for {args.minutes:g} min", flush=True)
            proxied = soak(f"http://127.0.0.1:{proxy_port}/", proxy_mix(images), containers, args)
            print(json.dumps({k: proxied[k] for k in ("requests", "statuses", "unexpected")}), flush=True)
            logs = subprocess.run(
                ["docker", "compose", "-p", project, "logs", "--no-color", "serve", "proxy"],
                cwd=ROOT,
                env={**os.environ, **env},
                capture_output=True,
                text=True,
            ).stdout
        finally:
            compose(project, env, "down", "--volumes", "--remove-orphans")
    result = {
        "started": started,
        "mix": MIX_WEIGHTS,
        "images": f"kennel-serve:{tag}, kennel-proxy:{tag}",
        "model": "the compose stack's own: ResNet-18, 64 px, 5 synthetic classes (its train service)",
        "cpus": os.cpu_count(),
        "phases": {"serving container": direct, "through the proxy": proxied},
        "tracebacks_in_logs": logs.count("Traceback"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
