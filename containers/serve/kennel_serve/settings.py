"""The serving settings, read once from the environment at start.

SageMaker sets its own variables (SageMaker's names are kept so that existing deployments behave the same);
Kennel's own knobs start with KENNEL_. Every default is listed in `VARIABLES`, which is also what the start-up
log line and `serve --help` print.
"""

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from kennel_common import model_format

MIB = 1024 * 1024

# name: (default, meaning). The defaults follow SageMaker's documented values where one exists.
VARIABLES: dict[str, tuple[str, str]] = {
    "SAGEMAKER_BIND_TO_PORT": ("8080", "port to listen on (pipelines and multi-container endpoints set it)"),
    "SAGEMAKER_MODEL_SERVER_WORKERS": (
        "",
        "server processes, each with its own model copy and an equal CPU share; unset: 2 for the built-in "
        "classifier's INT8 model on 2 CPUs or more, each sized for all the CPUs, else 1",
    ),
    "SAGEMAKER_MODEL_SERVER_TIMEOUT": (
        "60",
        "seconds an /invocations request may take before a 504 (600 in batch)",
    ),
    "SAGEMAKER_MAX_PAYLOAD_IN_MB": ("6", "largest request body in MiB (batch transform sets it, up to 100)"),
    "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": (
        "application/json",
        "response type when Accept is absent or */*",
    ),
    "SAGEMAKER_BATCH": ("false", "true in batch transform jobs: the timeout defaults to 600 s"),
    "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": ("", "answer of /execution-parameters; unset: the CPU count"),
    "SAGEMAKER_BATCH_STRATEGY": ("MULTI_RECORD", "answer of /execution-parameters"),
    "SAGEMAKER_PROGRAM": ("inference.py", "custom handler module in MODEL_DIR/code"),
    "SM_MODEL_DIR": ("/opt/ml/model", "the model directory (docs/model-format.md)"),
    # One batch of at most 4 images at a time, for both precisions: the best or tied for throughput and p99
    # at concurrency 16 in Kennel's sweep on an idle machine (docs/benchmarks.md). Four images run at nearly
    # the speed per image of sixteen, and a batch of sixteen holds its requests four times as long.
    "KENNEL_MAX_BATCH_SIZE": ("4", "most images in one ONNX Runtime call"),
    "KENNEL_MAX_BATCH_DELAY_MS": ("0", "longest a request waits for others to join its batch"),
    "KENNEL_CONCURRENT_BATCHES": ("1", "batches the model runs at once in each worker, sharing its threads"),
    "KENNEL_TOP_K": ("5", "predictions per image unless the request asks (top_k=N custom attribute)"),
    "KENNEL_MAX_IMAGE_PIXELS": ("40000000", "images with more pixels are refused before decoding"),
    "KENNEL_MAX_REQUEST_PIXELS": (
        "200000000",
        "requests whose images hold more pixels in all are refused (413) before decoding",
    ),
    "KENNEL_CPUS": ("", "CPUs to size threads for; unset: what the container may use"),
    "KENNEL_PRECISION": (
        "auto",
        "model to serve: auto (int8 when the manifest has one, else fp32), int8, or fp32",
    ),
}
PRECISIONS = ("auto", "int8", "fp32")


class SettingsError(ValueError):
    """A variable with a value that cannot be used; the message names the variable."""


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup CPU quota (docker run --cpus)."""
    cpus = len(os.sched_getaffinity(0))
    quota = None
    try:  # cgroup v2
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if limit != "max":
            quota = int(limit) / int(period)
    except (OSError, ValueError):
        try:  # cgroup v1
            limit = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            quota = limit / period if limit > 0 else None
        except (OSError, ValueError):
            pass
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def default_workers(model_dir: Path, program: str, precision: str, cpus: int) -> int:
    """Two workers for the built-in classifier's INT8 model on 2 CPUs or more, one otherwise. INT8 is light
    enough (about 130 MB a worker) that a second copy pays: two processes decode, parse HTTP and run the model
    without sharing one interpreter, 1.1x the requests at concurrency 16 of one worker on 2 CPUs. fp32 stays
    at one worker (about 220 MB each), and a custom handler's model is of unknown size. A manifest that cannot
    be read gets one worker, which reports what is wrong on /ping."""
    if cpus < 2 or precision == "fp32" or (model_dir / "code" / program).is_file():
        return 1
    try:
        manifest = model_format.ModelManifest.read(model_dir)
    except Exception:  # whatever is wrong with it, the worker's load says so on /ping; start must not fail
        return 1
    return 2 if "int8" in manifest.models else 1


@dataclass(frozen=True)
class Settings:
    port: int
    workers: int
    timeout_s: float
    max_payload_bytes: int
    default_accept: str
    batch_mode: bool
    max_concurrent_transforms: int
    batch_strategy: str
    program: str
    model_dir: Path
    max_batch_size: int
    max_batch_delay_s: float
    concurrent_batches: int
    top_k: int
    max_image_pixels: int
    max_request_pixels: int
    cpus: int
    precision: str
    shared_cpus: bool = False  # the workers were not set: each is sized for all the CPUs

    @property
    def threads_per_worker(self) -> int:
        """Workers that were set get an equal share of the CPUs, so that they never oversubscribe them. The
        default workers each get all of them: ONNX Runtime's idle threads sleep (no spinning), so a lone
        request has every core, and under load the two share them (docs/benchmarks.md, Serving choices)."""
        return self.cpus if self.shared_cpus else max(1, self.cpus // self.workers)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> "Settings":
        env = os.environ if environ is None else environ

        def raw(name: str) -> str:
            value = env.get(name, "").strip()
            return value or VARIABLES[name][0]

        def number(name: str, kind: type = int, minimum: float = 0) -> int | float:
            try:
                value = kind(raw(name))
            except ValueError:
                raise SettingsError(f"{name}={raw(name)!r} is not a {kind.__name__}") from None
            if value < minimum:
                raise SettingsError(f"{name}={value} must be at least {minimum}")
            return value

        cpus = number("KENNEL_CPUS", minimum=1) if raw("KENNEL_CPUS") else available_cpus()
        precision = raw("KENNEL_PRECISION").lower()
        if precision not in PRECISIONS:
            raise SettingsError(f"KENNEL_PRECISION={precision!r} is not one of {', '.join(PRECISIONS)}")
        batch_mode = raw("SAGEMAKER_BATCH").lower() == "true"
        # Batch transform waits up to InvocationsTimeoutInSeconds (default 600 s), not real-time's 60 s.
        timeout_s = (
            600.0 if batch_mode and not env.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", "").strip() else None
        )
        transforms = raw("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS")
        model_dir, program = Path(raw("SM_MODEL_DIR")), raw("SAGEMAKER_PROGRAM")
        if raw("SAGEMAKER_MODEL_SERVER_WORKERS"):
            workers = number("SAGEMAKER_MODEL_SERVER_WORKERS", minimum=1)
        else:
            workers = default_workers(model_dir, program, precision, cpus)
        values = {
            "port": number("SAGEMAKER_BIND_TO_PORT", minimum=1),
            "workers": workers,
            "shared_cpus": not raw("SAGEMAKER_MODEL_SERVER_WORKERS"),
            "timeout_s": timeout_s or number("SAGEMAKER_MODEL_SERVER_TIMEOUT", float, minimum=0.001),
            "max_payload_bytes": int(number("SAGEMAKER_MAX_PAYLOAD_IN_MB", float, minimum=0.001) * MIB),
            "default_accept": raw("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT").lower(),
            "batch_mode": batch_mode,
            "max_concurrent_transforms": number("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", minimum=1)
            if transforms
            else cpus,
            "batch_strategy": raw("SAGEMAKER_BATCH_STRATEGY").upper(),
            "program": program,
            "model_dir": model_dir,
            "max_batch_size": number("KENNEL_MAX_BATCH_SIZE", minimum=1),
            "max_batch_delay_s": number("KENNEL_MAX_BATCH_DELAY_MS", float) / 1000,
            "concurrent_batches": number("KENNEL_CONCURRENT_BATCHES", minimum=1),
            "top_k": number("KENNEL_TOP_K", minimum=1),
            "max_image_pixels": number("KENNEL_MAX_IMAGE_PIXELS", minimum=1),
            "max_request_pixels": number("KENNEL_MAX_REQUEST_PIXELS", minimum=1),
            "cpus": cpus,
            "precision": precision,
        }
        return cls(**{**values, **overrides})

    def describe(self) -> dict[str, object]:
        """The effective settings as JSON-friendly values, for the start-up log line."""
        return {
            key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()
        } | {"threads_per_worker": self.threads_per_worker}
