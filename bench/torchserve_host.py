"""TorchServe 0.12 for the serving benchmark: a TorchScript archive of the benchmark's weights with the
built-in `image_classifier` handler, run on this host from .venv and pinned to the benchmark's cores.

    .venv/bin/python -m bench.serve --out bench/results/serving.json    # drives it (make bench)

Token authorization is off (`--disable-token-auth`) and the management API's model registration stays off
(the default): the one model is loaded at start with `--models`, and every address is 127.0.0.1.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch
from torch import nn

VENV_BIN = Path(sys.executable).parent
MODEL_NAME = "resnet50"


@dataclass(frozen=True)
class Tuning:
    """The per-model settings of model-config.yaml; None leaves TorchServe's default."""

    workers: int | None = None
    batch_size: int | None = None
    max_batch_delay_ms: int | None = None
    omp_threads: int | None = None  # OMP_NUM_THREADS of each worker

    def describe(self) -> str:
        if self == Tuning():
            return "defaults: one worker per core (2), batch size 1, torch threads = cores in each worker"
        return (
            f"{self.workers} worker(s), batchSize {self.batch_size}, maxBatchDelay "
            f"{self.max_batch_delay_ms} ms, "
            f"OMP_NUM_THREADS={self.omp_threads or 'unset'}"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def archive(model: nn.Module, labels: list[str], tuning: Tuning, name: str, store: Path, work: Path) -> Path:
    """`torch-model-archiver` on a TorchScript trace of `model`; the tuning goes into model-config.yaml."""
    for folder in (work, store):
        folder.mkdir(parents=True, exist_ok=True)
    scripted = work / "model.pt"
    if not scripted.exists():
        with torch.inference_mode():
            torch.jit.trace(model.eval(), torch.zeros(1, 3, 224, 224)).save(str(scripted))
    (work / "index_to_name.json").write_text(json.dumps({str(i): label for i, label in enumerate(labels)}))
    command = [
        str(VENV_BIN / "torch-model-archiver"),
        "--model-name", name, "--version", "1.0", "--serialized-file", str(scripted),
        "--handler", "image_classifier", "--extra-files", str(work / "index_to_name.json"),
        "--export-path", str(store), "--force",
    ]  # fmt: skip
    settings = {
        "minWorkers": tuning.workers,
        "maxWorkers": tuning.workers,
        "batchSize": tuning.batch_size,
        "maxBatchDelay": tuning.max_batch_delay_ms,
    }
    if any(value is not None for value in settings.values()):
        config = work / f"{name}.yaml"
        config.write_text(
            "".join(f"{key}: {value}\n" for key, value in settings.items() if value is not None)
        )
        command += ["--config-file", str(config)]
    subprocess.run(command, check=True)
    return store / f"{name}.mar"


@dataclass
class TorchServe:
    """One TorchServe process tree (Java frontend + Python workers) on 127.0.0.1, in its own session."""

    process: subprocess.Popen
    url: str
    home: Path

    @property
    def predict_url(self) -> str:
        return f"{self.url}/predictions/{MODEL_NAME}"

    def rss_bytes(self) -> int:
        root = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)] if p.is_running())

    def stop(self) -> None:
        """Ends the whole tree (the JVM outlives its Python launcher for a moment) and removes its files."""
        if self.process.poll() is None:
            tree = [
                psutil.Process(self.process.pid),
                *psutil.Process(self.process.pid).children(recursive=True),
            ]
            os.killpg(self.process.pid, signal.SIGTERM)
            _, alive = psutil.wait_procs(tree, timeout=30)
            for process in alive:
                process.kill()
            self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


def start(mar: Path, tuning: Tuning, cpus: str, home: Path) -> TorchServe:
    """Starts TorchServe in the foreground under `taskset -c cpus`; returns at once (not yet ready)."""
    home.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("inference", "management", "metrics")}
    config = home / "config.properties"
    config.write_text(
        "".join(f"{name}_address=http://127.0.0.1:{port}\n" for name, port in ports.items())
        + "disable_token_authorization=true\nenable_model_api=false\n"
    )
    environment = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "LOG_LOCATION": str(home / "logs"),
    }
    if tuning.omp_threads:
        environment["OMP_NUM_THREADS"] = str(tuning.omp_threads)
    command = [
        "taskset", "-c", cpus, str(VENV_BIN / "torchserve"), "--start", "--foreground", "--ncs",
        "--disable-token-auth", "--ts-config", str(config), "--model-store", str(mar.parent),
        "--models", f"{MODEL_NAME}={mar.name}",
    ]  # fmt: skip
    log = (home / "torchserve.log").open("w")
    process = subprocess.Popen(
        command, cwd=home, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return TorchServe(process, f"http://127.0.0.1:{ports['inference']}", home)
