"""The stack file: one TOML document that names every AWS resource Kennel deploys.

`load(path)` validates it into a frozen `Stack`; every resource name is a property derived from it, so
`up`, `down` and `status` walk the same list. A wrong, missing or misspelled key is a `StackError`
naming the key (for example `endpoint.instance_count`).

Each table has its parser in the module of its section, built on the checks in `validate`; `parse` only
assembles their results, after `kinds` has refused the keys that do not apply to the endpoint's kind.
"""

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.stack.alarms import Alarms, parse_alarms
from deploy.stack.autoscaling import Autoscaling, parse_autoscaling
from deploy.stack.endpoint import AsyncInference, DataCapture, Endpoint, Serverless, parse_endpoint
from deploy.stack.function import Lambda, parse_lambda
from deploy.stack.kinds import endpoint_kind
from deploy.stack.model import Images, Model, parse_images, parse_model
from deploy.stack.registry import Registry, parse_registry
from deploy.stack.rollout import Rollout, check_alarms
from deploy.stack.training import Training, Tuning, parse_training, parse_tuning
from deploy.stack.transform import Transform, parse_transform
from deploy.stack.validate import PREFIX, StackError, Table

__all__ = [
    "ROOT",
    "Alarms",
    "AsyncInference",
    "Autoscaling",
    "DataCapture",
    "Endpoint",
    "Images",
    "Lambda",
    "Model",
    "Registry",
    "Rollout",
    "Serverless",
    "Stack",
    "StackError",
    "Training",
    "Transform",
    "Tuning",
    "load",
    "parse",
]

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"^[a-z][a-z0-9-]{1,19}$")
POLICY_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,128}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


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
    alarms: Alarms = field(default_factory=Alarms)
    transform: Transform | None = None
    # A managed policy (made by an administrator) that bounds every role `up` creates; None: no boundary.
    permissions_boundary: str | None = None
    registry: Registry | None = None  # [registry]: models are registered, and may be served from there

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
    def model_package_group(self) -> str:
        return f"{self.name}-models"

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
    """The stack in `doc`; `base` is the folder that relative paths resolve against."""
    top = Table(doc, "")
    endpoint_table = top.table("endpoint")
    kind = endpoint_kind(endpoint_table, doc)
    bucket, prefix = _s3(top.table("s3"))
    endpoint = parse_endpoint(endpoint_table, kind, prefix, base)
    model = parse_model(top.table("model"), base)
    stack = Stack(
        name=top.string("name", pattern=NAME),
        region=top.string("region", pattern=REGION),
        bucket=bucket,
        prefix=prefix,
        tags=top.table("tags", required=False).string_map(),
        images=parse_images(top.table("images")),
        model=model,
        training=parse_training(top.table("training")),
        tuning=parse_tuning(top.table("tuning")),
        endpoint=endpoint,
        autoscaling=parse_autoscaling(top.table("autoscaling", required=kind != "serverless"), endpoint),
        function=parse_lambda(top.table("lambda", required=kind != "async"), base),
        path=path or base,
        alarms=parse_alarms(top.table("alarms", required=False)),
        transform=parse_transform(top.table("transform", required=False)),
        permissions_boundary=top.string("permissions_boundary", required=False, pattern=POLICY_NAME),
        registry=parse_registry(top.table("registry", required=False), model),
    )
    top.reject_unknown()
    check_alarms(endpoint.rollout, stack.alarms)
    return stack


def _s3(table: Table) -> tuple[str, str]:
    """[s3]: the bucket, and the key prefix of everything Kennel reads and writes there."""
    bucket, prefix = table.string("bucket", pattern=BUCKET), table.string("prefix", pattern=PREFIX)
    table.reject_unknown()
    return bucket, prefix
