"""Prometheus metrics, one registry per app so that each app (and each test) counts only its own traffic.
With SAGEMAKER_MODEL_SERVER_WORKERS > 1 each worker process reports its own numbers."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


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
        self.queue_depth = Gauge("kennel_queue_depth", "Images waiting for a batch", registry=self.registry)
        self.model_load_seconds = Gauge(
            "kennel_model_load_seconds", "Time taken to load and warm up the model", registry=self.registry
        )
