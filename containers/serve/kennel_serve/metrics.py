"""Prometheus metrics, one registry per app so that each app (and each test) counts only its own traffic.

With SAGEMAKER_MODEL_SERVER_WORKERS > 1, `serve` sets PROMETHEUS_MULTIPROC_DIR to a fresh folder before the
workers start; each worker then writes its values to files there (prometheus_client's multiprocess mode) and
a scrape, whichever worker answers it, reports the sum over all of them.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_mode() -> bool:
    """True when values go to files shared by the workers (prometheus_client reads this at import too)."""
    return bool(os.environ.get(MULTIPROC_DIR))


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kennel_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kennel_request_seconds",
            "Request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "kennel_batch_size", "Images per ONNX Runtime call", buckets=BATCH_BUCKETS, registry=self.registry
        )
        # Sampled when a batch starts; with several workers, the sum over the live ones.
        self.queue_depth = Gauge(
            "kennel_queue_depth",
            "Images waiting for a batch",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        # With several workers, one sample per live worker, labelled with its pid.
        self.model_load_seconds = Gauge(
            "kennel_model_load_seconds",
            "Time taken to load and warm up the model",
            registry=self.registry,
            multiprocess_mode="liveall",
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text a scrape gets, and its content type: this process's registry, or every worker's files."""
        if not multiprocess_mode():
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Drops this worker's live gauges from the shared files when it stops."""
        forget_process(os.getpid())


def forget_process(pid: int) -> None:
    """Drops a worker's live gauges from the shared files: each worker's own `close`, or the supervisor for a
    worker that died without one."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(pid)
