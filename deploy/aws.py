"""What every resource module shares: clients, the error type, the record of what a run changes, and
the release tag of the images it deploys.

boto3 honours AWS_ENDPOINT_URL, AWS_PROFILE and the rest of its environment, so nothing here knows
whether it talks to AWS or to an emulator.
"""

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from deploy.stack import ROOT, Stack

# Standard retry mode backs off on throttling; AWS_MAX_ATTEMPTS in the environment still applies.
CLIENT_CONFIG = Config(retries={"mode": "standard"})


class DeployError(RuntimeError):
    """A deploy step that failed; `reason` carries the service's own FailureReason when it gave one."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(f"{message}: {reason}" if reason else message)
        self.reason = reason


# How SageMaker says that an endpoint, endpoint config, model, training or transform job does not exist.
SAGEMAKER_NOT_FOUND = ("Could not find", "does not exist", "Requested resource not found")


def sagemaker_not_found(err: ClientError) -> bool:
    """Whether SageMaker answered that the named resource does not exist. Other services' calls have a
    modeled not-found error (`client.exceptions.X`). SageMaker's Describe and Delete calls for endpoints,
    endpoint configs and models model none, and DescribeTrainingJob, whose model lists ResourceNotFound,
    answers "Requested resource not found." in a ValidationException all the same (aws/aws-sdk#165):
    only the message of a ValidationException tells."""
    error = err.response.get("Error", {})
    message = error.get("Message", "")
    return error.get("Code") == "ValidationException" and any(p in message for p in SAGEMAKER_NOT_FOUND)


# The folders the training and serving images are built from (their Dockerfiles copy nothing else).
IMAGE_SOURCES = ("containers", "kennel_common")


def release_tag(stack: Stack, root: Path | None = None) -> str:
    """The tag the images get in ECR: `images.tag` from the stack, else the git revision of clean
    IMAGE_SOURCES (what the pushed images are built from). ECR tags are immutable, so a tag must name
    one build."""
    if stack.images.tag:
        return stack.images.tag

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root or ROOT, capture_output=True, text=True)
        if done.returncode:
            raise DeployError("images.tag is unset and the git revision is unknown", done.stderr.strip())
        return done.stdout.strip()

    revision = git("rev-parse", "--short=12", "HEAD")
    if dirty := git("status", "--porcelain", "--", *IMAGE_SOURCES):
        changed = sorted({line.split(maxsplit=1)[1].split("/")[0] + "/" for line in dirty.splitlines()})
        raise DeployError(
            f"{' and '.join(changed)} {'has' if len(changed) == 1 else 'have'} uncommitted changes: "
            "commit them (tags are immutable) or set images.tag"
        )
    return revision


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: str  # create, update, delete or unchanged
    detail: str = ""

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.action:>9}  {self.kind:<22} {self.name}{detail}"


# publish(image name, repository, tag, docker credentials) -> pushed manifest digest
Publisher = Callable[[str, str, str, dict[str, str]], str]


@dataclass
class Run:
    """One `plan`, `up` or `down`: its clients, and what it did (or, when `dry_run`, would do).

    What a run reaches outside itself can be handed in: `clients`, by service name, are used as they
    are (a Stubber's client; clients shared by several runs), and the ones missing are made from boto3
    on first use and kept there. `publish` builds and pushes an image; None is the local image builder,
    then `docker push` (ecr.build_and_push)."""

    stack: Stack
    dry_run: bool = False
    poll_seconds: int = 30
    say: Callable[[str], None] = print
    changes: list[Change] = field(default_factory=list)
    clients: dict[str, Any] = field(default_factory=dict)
    publish: Publisher | None = None

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = boto3.client(service, region_name=self.stack.region, config=CLIENT_CONFIG)
        return self.clients[service]

    @cached_property
    def account(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]

    @cached_property
    def release_tag(self) -> str:
        """The images' tag in ECR (`release_tag`), worked out once per run."""
        return release_tag(self.stack)

    @cached_property
    def model_archive(self) -> bytes:
        """model.tar.gz of the stack's local model directory, made once per run: pre-flight and the upload
        both need it, and compressing a large model takes seconds."""
        from deploy import s3  # s3 imports this module

        return s3.archive(self.stack.model.dir)

    @property
    def partition(self) -> str:
        return self.client("sts").meta.partition

    def arn(self, service: str, resource: str, region: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.stack.region if region else ''}:{self.account}:{resource}"
        )

    def waiter_config(self, minutes: int) -> dict[str, int]:
        delay = max(self.poll_seconds, 1)
        return {"Delay": self.poll_seconds, "MaxAttempts": max(1, minutes * 60 // delay)}

    def apply(self, kind: str, name: str, action: str, detail: str = "") -> bool:
        """Records a change; returns True when the caller should make it (False in a dry run)."""
        change = Change(kind, name, action, detail)
        self.changes.append(change)
        self.say(("would " if self.dry_run and action != "unchanged" else "") + str(change).strip())
        return action != "unchanged" and not self.dry_run

    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.action != "unchanged"]

    def tag_list(self, key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
        return [{key: k, value: v} for k, v in self.stack.all_tags().items()]
