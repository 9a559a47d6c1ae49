"""[endpoint]: the SageMaker endpoint, with the table of its kind ([endpoint.serverless] or
[endpoint.async]) and the optional [endpoint.data_capture] and [endpoint.rollout]."""

import re
from dataclasses import dataclass, field
from pathlib import Path

from deploy.stack.rollout import Rollout, parse_rollout
from deploy.stack.validate import INSTANCE_TYPE, PREFIX, StackError, Table

VARIANT = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
# The CPU alarm and the dashboard need the vCPU count, which the size names.
SIZED = re.compile(r"^ml\.[a-z0-9]+\.(medium|large|\d*xlarge)$")
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
# Keys of the S3 prefix that other parts of Kennel own; async prefixes may not reach into them.
OWNED_PREFIXES = ("data", "training", "checkpoints", "models")


@dataclass(frozen=True)
class DataCapture:
    """SageMaker data capture: this share of requests and answers, as JSON Lines under `prefix`."""

    sampling_percentage: int
    prefix: str


@dataclass(frozen=True)
class Serverless:
    memory_size_mb: int
    max_concurrency: int
    provisioned_concurrency: int  # 0: none


@dataclass(frozen=True)
class AsyncInference:
    # Key prefixes below [s3] prefix: requests are uploaded to input_prefix; SageMaker writes results
    # to output_prefix and errors to failure_prefix.
    input_prefix: str
    output_prefix: str
    failure_prefix: str
    success_topic: bool
    error_topic: bool
    max_concurrent_invocations_per_instance: int
    max_payload_mb: int


@dataclass(frozen=True)
class Endpoint:
    instance_type: str | None  # None on a serverless endpoint
    instance_count: int | None
    variant: str
    startup_health_check_timeout_seconds: int | None  # None on a serverless endpoint
    model_download_timeout_seconds: int | None
    log_retention_days: int
    data_capture: DataCapture | None = None
    kind: str = "realtime"
    serverless: Serverless | None = None
    async_inference: AsyncInference | None = None
    # EnableNetworkIsolation on the model: the serving container reaches no network. Serverless: always off.
    network_isolation: bool = True
    rollout: Rollout = field(default_factory=Rollout)


def parse_endpoint(table: Table, kind: str, prefix: str, base: Path) -> Endpoint:
    """The endpoint of `kind` (from `endpoint_kind`); `prefix` is [s3] prefix, where async prefixes live;
    `base` is the folder that paths resolve against."""
    instances = kind != "serverless"
    instance_type = _instance_type(table) if instances else None

    def start_up(key: str) -> int | None:  # SageMaker manages a serverless endpoint's start-up
        return table.integer(key, minimum=60, maximum=3600) if instances else None

    endpoint = Endpoint(
        instance_count=table.integer("instance_count", minimum=1) if instances else None,
        instance_type=instance_type,
        variant=table.string("variant", pattern=VARIANT),
        startup_health_check_timeout_seconds=start_up("startup_health_check_timeout_seconds"),
        model_download_timeout_seconds=start_up("model_download_timeout_seconds"),
        log_retention_days=table.integer("log_retention_days", minimum=1),
        network_isolation=table.boolean("network_isolation")
        if "network_isolation" in table.data
        else instances,
        kind=kind,
        serverless=_serverless(table.table("serverless")) if kind == "serverless" else None,
        async_inference=_async(table.table("async"), prefix) if kind == "async" else None,
        data_capture=_data_capture(table.table("data_capture", required=False)),
        rollout=parse_rollout(table.table("rollout", required=False), kind, instance_type, base),
    )
    table.reject_unknown()
    return endpoint


def _instance_type(table: Table) -> str:
    instance_type = table.string("instance_type", pattern=INSTANCE_TYPE)
    if instance_type.startswith("ml.t"):
        raise StackError("endpoint.instance_type: auto-scaling does not support burstable ml.t* instances")
    if not SIZED.match(instance_type):
        raise StackError(
            f"endpoint.instance_type: {instance_type!r} has no size that names its vCPU count "
            "(medium, large, xlarge, 2xlarge, ...), which the CPU alarm and dashboard need"
        )
    return instance_type


def _serverless(table: Table) -> Serverless:
    memory = table.integer(
        "memory_size_mb", minimum=SERVERLESS_MEMORY_MB[0], maximum=SERVERLESS_MEMORY_MB[-1]
    )
    if memory not in SERVERLESS_MEMORY_MB:
        raise StackError(
            f"endpoint.serverless.memory_size_mb: {memory} is not one of SageMaker's sizes "
            f"{', '.join(map(str, SERVERLESS_MEMORY_MB))}"
        )
    concurrency = table.integer("max_concurrency", minimum=1, maximum=200)
    provisioned = (
        table.integer("provisioned_concurrency", minimum=0) if "provisioned_concurrency" in table.data else 0
    )
    if provisioned > concurrency:
        raise StackError("endpoint.serverless.provisioned_concurrency: may not exceed max_concurrency")
    table.reject_unknown()
    return Serverless(memory, concurrency, provisioned)


def _async(table: Table, prefix: str) -> AsyncInference:
    prefixes = [
        table.string(key, pattern=PREFIX) for key in ("input_prefix", "output_prefix", "failure_prefix")
    ]
    for key, value in zip(("input_prefix", "output_prefix", "failure_prefix"), prefixes, strict=True):
        if value.split("/", 1)[0] in OWNED_PREFIXES:
            raise StackError(
                f"endpoint.async.{key}: {value!r} is inside {prefix}/{value.split('/', 1)[0]}/, which "
                f"Kennel keeps for other things ({', '.join(OWNED_PREFIXES)}); pick another prefix"
            )
    for i, a in enumerate(prefixes):
        for b in prefixes[i + 1 :]:
            if a == b or a.startswith(f"{b}/") or b.startswith(f"{a}/"):
                raise StackError(
                    f"endpoint.async: {a!r} and {b!r} overlap; input, output and failure prefixes must be "
                    "separate so that each can be granted on its own"
                )
    config = AsyncInference(
        input_prefix=prefixes[0],
        output_prefix=prefixes[1],
        failure_prefix=prefixes[2],
        success_topic=table.boolean("success_topic"),
        error_topic=table.boolean("error_topic"),
        max_concurrent_invocations_per_instance=table.integer(
            "max_concurrent_invocations_per_instance", minimum=1, maximum=1000
        ),
        # Async requests may be up to 1 GB; the container refuses bodies over this before reading them.
        max_payload_mb=table.integer("max_payload_mb", minimum=1, maximum=1024),
    )
    table.reject_unknown()
    return config


def _data_capture(table: Table) -> DataCapture | None:
    """Off unless the table is present; SageMaker does not capture on serverless endpoints (kinds.py)."""
    if not table.present:
        return None
    capture = DataCapture(
        sampling_percentage=table.integer("sampling_percentage", minimum=1, maximum=100),
        prefix=table.optional_string("prefix", "data-capture", PREFIX),
    )
    table.reject_unknown()
    return capture
