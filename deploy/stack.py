"""The stack file: one TOML document that names every AWS resource Kennel deploys.

`load(path)` validates it into a frozen `Stack`; every resource name is a property derived from it, so
`up`, `down` and `status` walk the same list. A wrong, missing or misspelled key is a `StackError`
naming the key (for example `endpoint.instance_count`).
"""

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"^[a-z][a-z0-9-]{1,19}$")
POLICY_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,128}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PREFIX = re.compile(r"^[a-z0-9][a-z0-9/_-]*[a-z0-9]$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
CHANNEL = re.compile(r"^[A-Za-z0-9\.\-_]+$")


class StackError(ValueError):
    """A stack file that cannot be deployed; the message starts with the offending key."""


@dataclass(frozen=True)
class Images:
    tag: str | None


@dataclass(frozen=True)
class Model:
    dir: Path | None
    training_job: str | None


@dataclass(frozen=True)
class Training:
    instance_type: str
    instance_count: int
    volume_size_gb: int
    max_runtime_seconds: int
    spot: bool
    max_wait_seconds: int
    channels: tuple[str, ...]
    hyperparameters: dict[str, str]
    tensorboard: bool = False  # TensorBoardOutputConfig: the job's TensorBoard scalars synced to S3


@dataclass(frozen=True)
class Tuning:
    max_jobs: int
    max_parallel_jobs: int
    learning_rate: tuple[float, float]
    batch_sizes: tuple[int, ...]


@dataclass(frozen=True)
class Endpoint:
    instance_type: str | None  # None on a serverless endpoint
    instance_count: int | None
    variant: str
    startup_health_check_timeout_seconds: int | None  # None on a serverless endpoint
    model_download_timeout_seconds: int | None
    log_retention_days: int
    data_capture: "DataCapture | None" = None
    kind: str = "realtime"
    serverless: "Serverless | None" = None
    async_inference: "AsyncInference | None" = None
    # EnableNetworkIsolation on the model: the serving container reaches no network. Serverless: always off.
    network_isolation: bool = True


@dataclass(frozen=True)
class Autoscaling:
    min_instances: int
    max_instances: int
    target_invocations_per_instance: float | None  # realtime
    scale_in_cooldown_seconds: int
    scale_out_cooldown_seconds: int
    target_backlog_per_instance: float | None = None  # async


@dataclass(frozen=True)
class Lambda:
    source_dir: Path
    runtime: str
    memory_mb: int
    timeout_seconds: int
    reserved_concurrency: int
    provisioned_concurrency: int
    function_url: bool
    log_retention_days: int
    # The proxy's URL fetching and CORS (lambda/defaults.py); empty or None: the proxy's own default there.
    allowed_url_hosts: tuple[str, ...] = ()
    max_image_bytes: int | None = None
    cors_allow_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stack:
    name: str
    region: str
    bucket: str
    prefix: str
    tags: dict[str, str]
    images: Images
    model: Model
    training: Training
    tuning: Tuning
    endpoint: Endpoint
    autoscaling: Autoscaling | None  # None on a serverless endpoint
    function: Lambda | None  # None on an async endpoint
    path: Path = field(compare=False)
    alarms: "Alarms" = field(default_factory=lambda: Alarms())
    transform: "Transform | None" = None
    # A managed policy (made by an administrator) that bounds every role `up` creates; None: no boundary.
    permissions_boundary: str | None = None

    # Every resource name derives from `name`; lower case throughout because IAM matches endpoint ARNs
    # in lower case.
    def repository(self, image: str) -> str:
        return f"{self.name}-{image}"

    @property
    def endpoint_name(self) -> str:
        return f"{self.name}-endpoint"

    @property
    def function_name(self) -> str:
        return f"{self.name}-proxy"

    @property
    def hosting_role(self) -> str:
        return f"{self.name}-sagemaker-hosting"

    @property
    def training_role(self) -> str:
        return f"{self.name}-sagemaker-training"

    @property
    def lambda_role(self) -> str:
        return f"{self.name}-lambda-proxy"

    @property
    def endpoint_log_group(self) -> str:
        return f"/aws/sagemaker/Endpoints/{self.endpoint_name}"

    @property
    def lambda_log_group(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def scaling_policy(self) -> str:
        if self.endpoint.kind == "async":
            return f"{self.name}-backlog-per-instance"
        return f"{self.name}-invocations-per-instance"

    def s3_uri(self, *parts: str) -> str:
        return "s3://" + "/".join([self.bucket, self.prefix, *parts])

    def all_tags(self) -> dict[str, str]:
        return {"project": "kennel", "kennel:stack": self.name, **self.tags}


def load(path: str | Path) -> Stack:
    """Reads and validates a stack file; relative paths in it resolve against the file's folder."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise StackError(f"stack file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise StackError(f"stack file {path} is not valid TOML: {err}") from None
    return parse(doc, path.resolve().parent, path)


def parse(doc: dict[str, Any], base: Path, path: Path | None = None) -> Stack:
    top = _Table(doc, "")
    images = top.table("images")
    s3 = top.table("s3")
    model = top.table("model")
    training = top.table("training")
    tuning = top.table("tuning")
    endpoint = top.table("endpoint")
    kind = _kind(endpoint, top.data)
    scaling = top.table("autoscaling", required=kind != "serverless")
    fn = top.table("lambda", required=kind != "async")
    tags = top.table("tags", required=False)

    model_dir = model.string("dir", required=False)
    training_job = model.string("training_job", required=False)
    if (model_dir is None) == (training_job is None):
        raise StackError("model: set exactly one of model.dir and model.training_job")
    lr = tuning.numbers("learning_rate", float, length=2)
    if not 0 < lr[0] < lr[1]:
        raise StackError("tuning.learning_rate: needs 0 < low < high")
    instance_count, lo, hi, endpoint_type = _instances(kind, endpoint, scaling)
    reserved = fn.integer("reserved_concurrency", minimum=1) if fn.present else 0
    provisioned = fn.integer("provisioned_concurrency", minimum=0) if fn.present else 0
    if provisioned > reserved:
        raise StackError("lambda.provisioned_concurrency: may not exceed lambda.reserved_concurrency")
    spot = training.boolean("spot")
    max_runtime = training.integer("max_runtime_seconds", minimum=60)
    max_wait = training.integer("max_wait_seconds", minimum=60)
    if spot and max_wait < max_runtime:
        raise StackError("training.max_wait_seconds: must be at least training.max_runtime_seconds")

    transform = _transform(top.table("transform", required=False))
    stack = Stack(
        name=top.string("name", pattern=NAME),
        region=top.string("region", pattern=REGION),
        bucket=s3.string("bucket", pattern=BUCKET),
        prefix=s3.string("prefix", pattern=PREFIX),
        tags=tags.string_map() if tags.present else {},
        images=Images(
            tag=images.string("tag", required=False, pattern=TAG),
        ),
        model=Model(
            dir=(base / model_dir).resolve() if model_dir else None,
            training_job=training_job,
        ),
        training=Training(
            instance_type=training.string("instance_type", pattern=re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")),
            instance_count=training.integer("instance_count", minimum=1),
            volume_size_gb=training.integer("volume_size_gb", minimum=1),
            max_runtime_seconds=max_runtime,
            spot=spot,
            max_wait_seconds=max_wait,
            channels=tuple(training.strings("channels", pattern=CHANNEL)),
            hyperparameters=training.table("hyperparameters").scalar_map(),
            tensorboard=training.boolean("tensorboard") if "tensorboard" in training.data else False,
        ),
        tuning=Tuning(
            max_jobs=tuning.integer("max_jobs", minimum=1),
            max_parallel_jobs=tuning.integer("max_parallel_jobs", minimum=1),
            learning_rate=(lr[0], lr[1]),
            batch_sizes=tuple(int(b) for b in tuning.numbers("batch_sizes", int)),
        ),
        endpoint=Endpoint(
            instance_type=endpoint_type,
            instance_count=instance_count,
            variant=endpoint.string("variant", pattern=re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")),
            startup_health_check_timeout_seconds=endpoint.integer(
                "startup_health_check_timeout_seconds", minimum=60, maximum=3600
            )
            if kind != "serverless"
            else None,
            model_download_timeout_seconds=endpoint.integer(
                "model_download_timeout_seconds", minimum=60, maximum=3600
            )
            if kind != "serverless"
            else None,
            log_retention_days=endpoint.integer("log_retention_days", minimum=1),
            network_isolation=endpoint.boolean("network_isolation")
            if "network_isolation" in endpoint.data
            else kind != "serverless",
            kind=kind,
            serverless=_serverless(endpoint) if kind == "serverless" else None,
            async_inference=_async(endpoint, s3.data.get("prefix", "")) if kind == "async" else None,
        ),
        autoscaling=Autoscaling(
            min_instances=lo,
            max_instances=hi,
            target_invocations_per_instance=scaling.number("target_invocations_per_instance")
            if kind == "realtime"
            else None,
            scale_in_cooldown_seconds=scaling.integer("scale_in_cooldown_seconds", minimum=0),
            scale_out_cooldown_seconds=scaling.integer("scale_out_cooldown_seconds", minimum=0),
            target_backlog_per_instance=scaling.number("target_backlog_per_instance")
            if kind == "async"
            else None,
        )
        if scaling.present
        else None,
        function=Lambda(
            source_dir=(base / fn.string("source_dir")).resolve(),
            runtime=fn.string("runtime", pattern=re.compile(r"^python3\.\d+$")),
            memory_mb=fn.integer("memory_mb", minimum=128, maximum=10240),
            # Room for the proxy's URL fetch and its three InvokeEndpoint attempts (deploy/function.py).
            timeout_seconds=fn.integer("timeout_seconds", minimum=20, maximum=900),
            reserved_concurrency=reserved,
            provisioned_concurrency=provisioned,
            function_url=fn.boolean("function_url"),
            log_retention_days=fn.integer("log_retention_days", minimum=1),
        )
        if fn.present
        else None,
        path=path or base,
        transform=transform,
        permissions_boundary=top.string("permissions_boundary", required=False, pattern=POLICY_NAME),
    )
    stack = _with_operations(stack, top, endpoint, fn)
    for table in (top, images, s3, model, training, tuning, endpoint, scaling, fn):
        table.reject_unknown()
    return stack


# Batch transform input formats: content type -> (SplitType, BatchStrategy). Images are one record per
# object; JSON Lines ({"b64": ...} per line) are split by line and sent several lines per request.
TRANSFORM_CONTENT_TYPES = {
    "application/x-image": ("None", "SingleRecord"),
    "application/jsonlines": ("Line", "MultiRecord"),
}


@dataclass(frozen=True)
class Transform:
    instance_type: str
    instance_count: int
    content_type: str
    max_payload_mb: int
    max_concurrent_transforms: int

    @property
    def split_type(self) -> str:
        return TRANSFORM_CONTENT_TYPES[self.content_type][0]

    @property
    def batch_strategy(self) -> str:
        return TRANSFORM_CONTENT_TYPES[self.content_type][1]


def _transform(table: "_Table") -> Transform | None:
    """The optional [transform] table; without it `python -m deploy transform` says to add one."""
    if not table.present:
        return None
    content_type = table.string("content_type")
    if content_type not in TRANSFORM_CONTENT_TYPES:
        raise StackError(
            f"transform.content_type: {content_type!r} is not one of {', '.join(TRANSFORM_CONTENT_TYPES)}"
        )
    transform = Transform(
        instance_type=table.string("instance_type", pattern=re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")),
        instance_count=table.integer("instance_count", minimum=1),
        content_type=content_type,
        max_payload_mb=table.integer("max_payload_mb", minimum=1, maximum=100),
        max_concurrent_transforms=table.integer("max_concurrent_transforms", minimum=1, maximum=100),
    )
    if transform.max_payload_mb * transform.max_concurrent_transforms > 100:
        raise StackError(
            "transform.max_concurrent_transforms: times transform.max_payload_mb may not exceed 100 (MB)"
        )
    table.reject_unknown()
    return transform


class _Table:
    """One TOML table; each accessor records the key it read so unknown keys can be reported."""

    def __init__(self, data: Any, dotted: str) -> None:
        self.dotted = dotted
        self.present = data is not None
        self.data = data if isinstance(data, dict) else {}
        self.read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.dotted}.{name}" if self.dotted else name

    def _get(self, name: str, required: bool) -> Any:
        self.read.add(name)
        if name not in self.data:
            if required:
                raise StackError(f"{self.key(name)}: missing")
            return None
        return self.data[name]

    def table(self, name: str, required: bool = True) -> "_Table":
        value = self._get(name, required)
        if value is not None and not isinstance(value, dict):
            raise StackError(f"{self.key(name)}: must be a table")
        return _Table(value, self.key(name))

    def string(self, name: str, required: bool = True, pattern: re.Pattern | None = None) -> Any:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise StackError(f"{self.key(name)}: must be a non-empty string")
        if pattern and not pattern.match(value):
            raise StackError(f"{self.key(name)}: {value!r} does not match {pattern.pattern}")
        return value

    def integer(self, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._get(name, True)
        if isinstance(value, bool) or not isinstance(value, int):
            raise StackError(f"{self.key(name)}: must be an integer")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise StackError(f"{self.key(name)}: {value} is outside [{minimum}, {maximum}]")
        return value

    def number(self, name: str) -> float:
        value = self._get(name, True)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise StackError(f"{self.key(name)}: must be a positive number")
        return float(value)

    def boolean(self, name: str) -> bool:
        value = self._get(name, True)
        if not isinstance(value, bool):
            raise StackError(f"{self.key(name)}: must be true or false")
        return value

    def strings(self, name: str, pattern: re.Pattern) -> list[str]:
        value = self._get(name, True)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and pattern.match(v) for v in value)
        ):
            raise StackError(
                f"{self.key(name)}: must be a non-empty list of names matching {pattern.pattern}"
            )
        return value

    def numbers(self, name: str, kind: type, length: int | None = None) -> list:
        value = self._get(name, True)
        ok = (
            isinstance(value, list)
            and value
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        )
        if ok and kind is int:
            ok = all(isinstance(v, int) and v > 0 for v in value)
        if not ok or (length is not None and len(value) != length):
            size = f" of {length}" if length else ""
            raise StackError(f"{self.key(name)}: must be a list{size} of {kind.__name__}s")
        return [kind(v) for v in value]

    def string_map(self) -> dict[str, str]:
        for k, v in self.data.items():
            if not isinstance(v, str):
                raise StackError(f"{self.key(k)}: must be a string")
        return dict(self.data)

    def scalar_map(self) -> dict[str, str]:
        """SageMaker hyperparameters are strings; TOML numbers and booleans are converted."""
        out = {}
        for k, v in self.data.items():
            if isinstance(v, dict | list):
                raise StackError(f"{self.key(k)}: must be a string, number or boolean")
            out[k] = str(v).lower() if isinstance(v, bool) else str(v)
        return out

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            raise StackError(f"{self.key(unknown[0])}: unknown key")

    # Optional keys of the operations tables (see the end of this module).
    def optional_integer(self, name: str, minimum: int, maximum: int | None = None) -> int | None:
        return self.integer(name, minimum, maximum) if name in self.data else self._get(name, False)

    def optional_number(self, name: str) -> float | None:
        return self.number(name) if name in self.data else self._get(name, False)

    def optional_percent(self, name: str) -> float | None:
        value = self.optional_number(name)
        if value is not None and value > 100:
            raise StackError(f"{self.key(name)}: {value:g} is a percentage, at most 100")
        return value

    def optional_string(self, name: str, default: str | None, pattern: re.Pattern) -> str | None:
        value = self.string(name, required=False, pattern=pattern)
        return default if value is None else value

    def host_names(self, name: str) -> tuple[str, ...]:
        value = self._get(name, False)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise StackError(f"{self.key(name)}: must be a list of host names")
        return tuple(_host_name(self.key(name), v) for v in value)

    def origins(self, name: str) -> tuple[str, ...]:
        value = self._get(name, False)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise StackError(f"{self.key(name)}: must be a list of origins")
        for origin in value:
            if origin == "*":
                raise StackError(
                    f"{self.key(name)}: '*' is refused; list each origin, like https://app.example.com"
                )
            if not isinstance(origin, str) or not ORIGIN.match(origin.lower()):
                raise StackError(
                    f"{self.key(name)}: {origin!r} is not an origin (scheme://host[:port], no path), "
                    "like https://app.example.com"
                )
        return tuple(origin.lower() for origin in value)


# Operating the stack: the proxy's URL fetching and CORS, endpoint data capture, alarms.

# One DNS label; a host name is two or more of them and does not end in a number (that is an address).
LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:\d{1,5})?$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SIZED = re.compile(r"^ml\.[a-z0-9]+\.(medium|large|\d*xlarge)$")
# Lambda's synchronous payload and SageMaker's real-time request both stop at 6 MB.
MAX_IMAGE_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class DataCapture:
    """SageMaker data capture: this share of requests and answers, as JSON Lines under `prefix`."""

    sampling_percentage: int
    prefix: str


@dataclass(frozen=True)
class Alarms:
    """Alarm thresholds; None means that alarm is not created. `email` subscribes to the alarm topic."""

    evaluation_minutes: int = 5
    endpoint_5xx_percent: float | None = None
    endpoint_4xx_percent: float | None = None
    latency_p99_ms: float | None = None
    cpu_percent: float | None = None
    at_max_instances_minutes: int | None = None
    lambda_errors: int | None = None
    lambda_throttles: int | None = None
    lambda_duration_percent: float | None = None
    lambda_spillover: int | None = None
    email: str | None = None


def _with_operations(stack: Stack, top: "_Table", endpoint: "_Table", fn: "_Table") -> Stack:
    """The optional keys for operating the stack, read into a copy of `stack`."""
    if stack.endpoint.instance_type is not None and not SIZED.match(stack.endpoint.instance_type):
        raise StackError(
            f"endpoint.instance_type: {stack.endpoint.instance_type!r} has no size that names its vCPU count "
            "(medium, large, xlarge, 2xlarge, ...), which the CPU alarm and dashboard need"
        )
    capture = endpoint.table("data_capture", required=False)
    data_capture = None
    if capture.present:
        data_capture = DataCapture(
            sampling_percentage=capture.integer("sampling_percentage", minimum=1, maximum=100),
            prefix=capture.optional_string("prefix", "data-capture", PREFIX),
        )
        capture.reject_unknown()
    function = stack.function and replace(
        stack.function,
        allowed_url_hosts=fn.host_names("allowed_url_hosts"),
        max_image_bytes=fn.optional_integer("max_image_bytes", 1, MAX_IMAGE_BYTES),
        cors_allow_origins=fn.origins("cors_allow_origins"),
    )
    alarms = top.table("alarms", required=False)
    settings = Alarms()
    if alarms.present:
        settings = Alarms(
            evaluation_minutes=alarms.optional_integer("evaluation_minutes", 1, 60) or 5,
            endpoint_5xx_percent=alarms.optional_percent("endpoint_5xx_percent"),
            endpoint_4xx_percent=alarms.optional_percent("endpoint_4xx_percent"),
            latency_p99_ms=alarms.optional_number("latency_p99_ms"),
            cpu_percent=alarms.optional_percent("cpu_percent"),
            at_max_instances_minutes=alarms.optional_integer("at_max_instances_minutes", 1, 1440),
            lambda_errors=alarms.optional_integer("lambda_errors", 1),
            lambda_throttles=alarms.optional_integer("lambda_throttles", 1),
            lambda_duration_percent=alarms.optional_percent("lambda_duration_percent"),
            lambda_spillover=alarms.optional_integer("lambda_spillover", 1),
            email=alarms.optional_string("email", None, EMAIL),
        )
        alarms.reject_unknown()
    return replace(
        stack, endpoint=replace(stack.endpoint, data_capture=data_capture), function=function, alarms=settings
    )


def _host_name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise StackError(f"{key}: each entry must be a non-empty string")
    if "*" in value:
        raise StackError(f"{key}: {value!r}: wildcards are refused; list each host name")
    if "/" in value or "@" in value:
        raise StackError(f"{key}: {value!r} is a URL; give only the host name, like images.example.com")
    host, _, port = value.lower().partition(":")
    labels = host.split(".")
    if value.startswith("[") or labels[-1].isdigit():
        raise StackError(f"{key}: {value!r} is an address; give the host name the URLs use")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise StackError(f"{key}: {value!r}: the port must be a number from 1 to 65535")
    if len(labels) < 2 or len(host) > 253 or not all(LABEL.match(label) for label in labels):
        raise StackError(f"{key}: {value!r} is not a host name like images.example.com")
    return value.lower()


# Endpoint kinds: `[endpoint] kind` picks one; each kind's keys are refused on the others, with the reason.
KINDS = ("realtime", "serverless", "async")
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
# Keys of the S3 prefix that other parts of Kennel own; async prefixes may not reach into them.
OWNED_PREFIXES = ("data", "training", "checkpoints", "models")


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


# (kind the key belongs to, dotted key, why it does not apply elsewhere)
_KIND_ONLY = (
    ("serverless", "endpoint.serverless", "it sizes a serverless endpoint"),
    ("async", "endpoint.async", "it configures an async endpoint's queue, S3 prefixes and topics"),
    (
        "async",
        "autoscaling.target_backlog_per_instance",
        "only async endpoints scale on their queue (ApproximateBacklogSizePerInstance)",
    ),
    (
        "realtime",
        "autoscaling.target_invocations_per_instance",
        "only realtime endpoints scale on InvocationsPerInstance; async ones scale on "
        "autoscaling.target_backlog_per_instance",
    ),
)
_NOT_ON = {
    "serverless": (
        ("endpoint.instance_type", "a serverless endpoint has no instances; SageMaker sizes it by memory"),
        ("endpoint.instance_count", "a serverless endpoint has no instances; it scales by concurrency"),
        (
            "autoscaling",
            "a serverless endpoint scales itself up to endpoint.serverless.max_concurrency",
        ),
        (
            "endpoint.startup_health_check_timeout_seconds",
            "SageMaker manages a serverless endpoint's start-up",
        ),
        ("endpoint.model_download_timeout_seconds", "SageMaker manages a serverless endpoint's start-up"),
        ("endpoint.data_capture", "SageMaker does not capture data on serverless endpoints"),
        ("endpoint.network_isolation", "SageMaker does not isolate serverless endpoints from the network"),
        ("alarms.cpu_percent", "a serverless endpoint has no instances whose CPU could be watched"),
        ("alarms.at_max_instances_minutes", "a serverless endpoint has no instance count"),
    ),
    "async": (
        (
            "lambda",
            "the proxy calls InvokeEndpoint, which an async endpoint refuses; send requests with "
            "`python -m deploy invoke --async` or InvokeEndpointAsync",
        ),
        *(
            (f"alarms.{key}", "an async stack has no Lambda proxy to watch")
            for key in ("lambda_errors", "lambda_throttles", "lambda_duration_percent", "lambda_spillover")
        ),
    ),
}


def _lookup(doc: dict[str, Any], dotted: str) -> bool:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _kind(endpoint: _Table, doc: dict[str, Any]) -> str:
    """`endpoint.kind`, after refusing every key that does not apply to it."""
    kind = endpoint.string("kind", required=False) or "realtime"
    if kind not in KINDS:
        raise StackError(f"endpoint.kind: {kind!r} is not one of {', '.join(KINDS)}")
    article = "an" if kind == "async" else "a"
    for owner, dotted, why in _KIND_ONLY:
        if owner != kind and _lookup(doc, dotted):
            raise StackError(f"{dotted}: does not apply to {article} {kind} endpoint: {why}; remove it")
    for dotted, why in _NOT_ON.get(kind, ()):
        if _lookup(doc, dotted):
            raise StackError(f"{dotted}: does not apply to {article} {kind} endpoint: {why}; remove it")
    return kind


def _instances(kind: str, endpoint: _Table, scaling: _Table) -> tuple:
    """(instance_count, min, max, instance_type); all None on a serverless endpoint. Async endpoints
    may scale to zero instances, but start with at least one."""
    if kind == "serverless":
        return None, None, None, None
    instance_count = endpoint.integer("instance_count", minimum=1)
    lo = scaling.integer("min_instances", minimum=0 if kind == "async" else 1)
    hi = scaling.integer("max_instances", minimum=1)
    if not lo <= instance_count <= hi:
        raise StackError(
            "autoscaling.min_instances: needs min_instances <= endpoint.instance_count <= max_instances"
        )
    endpoint_type = endpoint.string("instance_type", pattern=re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$"))
    if endpoint_type.startswith("ml.t"):
        raise StackError("endpoint.instance_type: auto-scaling does not support burstable ml.t* instances")
    return instance_count, lo, hi, endpoint_type


def _serverless(endpoint: _Table) -> Serverless:
    table = endpoint.table("serverless")
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


def _async(endpoint: _Table, prefix: str) -> AsyncInference:
    table = endpoint.table("async")
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
