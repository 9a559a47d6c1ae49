"""System metrics sampled in a daemon thread: CPU per core and memory (psutil), and with GPUs their
utilisation and memory (NVML through nvidia-ml-py, optional: without a driver the sampler goes on
without GPUs).

    sampler = SystemSampler(0.5)       # every 500 ms
    sampler.start()
    ... train ...
    sampler.stop()
    sampler.samples                    # [{"seconds", "cpu": [percent per core], "memory", "gpus": [...]}]

Per-core figures are stored as whole percents in bytes, so a day at 2 Hz on 96 cores stays small.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

log = logging.getLogger(__name__)


def nvml_reader() -> Callable[[], list[dict[str, float]]] | None:
    """A function returning utilisation and memory per GPU, or None when NVML is not there."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception as err:  # no driver, no library, no device: the sampler runs without GPUs
        log.debug("no GPU sampling: %s", err)
        return None

    def read() -> list[dict[str, float]]:
        out = []
        for handle in handles:
            rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out.append({"utilization": float(rates.gpu), "memory": memory.used / memory.total * 100})
        return out

    return read


class SystemSampler:
    def __init__(self, interval_s: float, clock: Callable[[], float] = time.time) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.samples: list[dict[str, Any]] = []
        self.gpus = nvml_reader() if interval_s > 0 else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="system-sampler", daemon=True)

    def start(self) -> None:
        if self.interval_s > 0:
            psutil.cpu_percent(percpu=True)  # the first call only starts the measurement
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.samples.append(self.sample())
            except Exception as err:  # a failing probe must never stop training
                log.warning("system sampling stopped: %s", err)
                return

    def sample(self) -> dict[str, Any]:
        cores = psutil.cpu_percent(percpu=True)
        return {
            "seconds": self.clock(),
            "cpu": bytes(min(255, round(value)) for value in cores),
            "memory": psutil.virtual_memory().percent,
            "gpus": self.gpus() if self.gpus else [],
        }

    def between(self, start: float, end: float) -> list[dict[str, Any]]:
        return [s for s in list(self.samples) if start <= s["seconds"] <= end]
