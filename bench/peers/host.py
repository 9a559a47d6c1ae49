"""The peers on this host: their environments, and one server process tree per configuration.

    .venv/bin/python -m bench.peers.host install    # .kennel/peer-bentoml, .kennel/peer-litserve (make bench)

Each peer gets its own virtual environment from its pinned requirements file (a peer's dependencies clash
with torch's and with each other's), made with the Python that runs this module and remade only when the
requirements file changes. A server runs under `taskset -c CPUS` on 127.0.0.1, like TorchServe in the
benchmark, with the repository's kennel_serve and kennel_common importable so that it decodes and
preprocesses as the serving image does.
"""

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.torchserve_host import free_port

ROOT = Path(__file__).resolve().parents[2]
PEERS = ("bentoml", "litserve")
NAMES = {"bentoml": "BentoML", "litserve": "LitServe"}


def environment_dir(kind: str) -> Path:
    return ROOT / ".kennel" / f"peer-{kind}"


def requirements(kind: str) -> Path:
    return ROOT / "bench" / f"requirements-{kind}.txt"


def install(kinds: tuple[str, ...] = PEERS) -> None:
    """Makes each peer's environment unless it was made from the same requirements file already."""
    for kind in kinds:
        folder, wanted = environment_dir(kind), requirements(kind)
        stamp = folder / "requirements.sha256"
        digest = hashlib.sha256(wanted.read_bytes()).hexdigest()
        if stamp.is_file() and stamp.read_text() == digest:
            continue
        print(f"installing {kind} into {folder}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        venv.create(folder, with_pip=True)
        pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "-r", str(wanted)]
        subprocess.run(pip, check=True)
        stamp.write_text(digest)


@dataclass(frozen=True)
class PeerTuning:
    """One configuration of a peer. `batch_wait_ms` is LitServe's batch_timeout; BentoML has no such knob
    (its dispatcher decides how long to wait from its own latency model) and ignores it."""

    kind: str  # bentoml or litserve
    workers: int
    ort_threads: int
    max_batch_size: int
    batch_wait_ms: float = 0.0

    def describe(self) -> str:
        wait = f", batch_timeout {self.batch_wait_ms:g} ms" if self.kind == "litserve" else ""
        return (
            f"{NAMES[self.kind]}: {self.workers} worker(s) x {self.ort_threads} ONNX Runtime thread(s), "
            f"max_batch_size {self.max_batch_size}{wait}"
        )

    def environment(self) -> dict[str, str]:
        return {
            "KENNEL_PEER_WORKERS": str(self.workers),
            "KENNEL_PEER_ORT_THREADS": str(self.ort_threads),
            "KENNEL_PEER_MAX_BATCH_SIZE": str(self.max_batch_size),
            "KENNEL_PEER_BATCH_TIMEOUT_MS": str(self.batch_wait_ms),
        }


@dataclass
class PeerServer:
    """One peer's process tree on 127.0.0.1, in its own session."""

    process: subprocess.Popen
    url: str
    predict_path: str
    ping_path: str
    home: Path

    @property
    def predict_url(self) -> str:
        return self.url + self.predict_path

    @property
    def ping_url(self) -> str:
        return self.url + self.ping_path

    def _tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def rss_bytes(self) -> int:
        total = 0
        for process in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        """Ends the whole tree (BentoML's workers run in sessions of their own) and removes its files."""
        if self.process.poll() is None:
            tree = self._tree()
            for process in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(signal.SIGTERM)
            _, alive = psutil.wait_procs(tree, timeout=20)
            for process in alive:
                with contextlib.suppress(psutil.NoSuchProcess):  # it may end between the wait and the kill
                    process.kill()
            self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


def start(tuning: PeerTuning, model_dir: Path, precision: str, cpus: str, home: Path) -> PeerServer:
    """Starts a peer in the foreground under `taskset -c cpus`; returns at once (not yet ready)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    python = environment_dir(tuning.kind) / "bin" / "python"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))},
        **tuning.environment(),
        "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT, ROOT / "containers" / "serve")),
        "KENNEL_PEER_MODEL_DIR": str(model_dir),
        "KENNEL_PEER_PRECISION": precision,
        "KENNEL_PEER_PORT": str(port),
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    if tuning.kind == "bentoml":
        command = [str(python), "-m", "bentoml", "serve", "bench.peers.bentoml_service:ImageClassifier",
                   "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        paths = ("/classify", "/readyz")
    else:
        command = [str(python), "-m", "bench.peers.litserve_app"]
        paths = ("/predict", "/health")
    log = (home / "server.log").open("w")
    process = subprocess.Popen(
        ["taskset", "-c", cpus, *command], cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    return PeerServer(process, f"http://127.0.0.1:{port}", *paths, home)


def main() -> None:
    parser = argparse.ArgumentParser(description="The serving benchmark's peers.")
    parser.add_argument("action", choices=["install"])
    parser.parse_args()
    install()
    print(
        f"peers ready: {', '.join(str(environment_dir(kind)) for kind in PEERS)}; "
        f"python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
