"""SageMaker's Model Registry: the model package group NAME-models, one version per registered model.

    python -m deploy models --stack my-stack.toml register build/model
    python -m deploy models --stack my-stack.toml list
    python -m deploy models --stack my-stack.toml approve 3
    python -m deploy models --stack my-stack.toml reject 2 --reason "confuses huskies and malamutes"

With `[registry]` in the stack file, `train --wait`, `promote` and `models register` each register a
version. A version holds what CreateModel needs (the serving image and the model archive), the
manifest's metrics as the registry's ModelMetrics (a statistics file under PREFIX/registry/), and where
the model came from (the training job and the git revision, in MetadataProperties, which cannot change
after registration, and in CustomerMetadataProperties for the console). It starts PendingManualApproval.
`[model] package` makes `up` serve an approved version and nothing else: `deployable` refuses before
anything is changed.
"""

import hashlib
import json
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from deploy import ecr, endpoint, s3
from deploy.aws import DeployError, Run, sagemaker_not_found
from deploy.stack.model import LATEST_APPROVED
from kennel_common.model_format import MANIFEST_FILE

PENDING, APPROVED, REJECTED = "PendingManualApproval", "Approved", "Rejected"
# What the serving image reads and answers (kennel_serve.codecs: DECODERS, ENCODERS).
CONTENT_TYPES = (
    "image/jpeg",
    "image/png",
    "application/x-image",
    "application/json",
    "application/jsonlines",
)
RESPONSE_TYPES = ("application/json", "application/jsonlines")
# The manifest's figures, as the statistics file names them: (name, manifest section, key).
METRICS = (
    ("validation_accuracy", "metrics", "val_accuracy"),
    ("test_accuracy", "metrics", "test_accuracy"),
    ("int8_agreement", "quantization", "agreement"),
)


@dataclass(frozen=True)
class Version:
    """One model package version as `list` shows it."""

    number: int
    arn: str
    status: str
    created: datetime
    reason: str | None
    training_job: str | None
    revision: str | None
    metrics: dict[str, float]

    def describe(self) -> str:
        return f"version {self.number} ({self.status})"


def group(run: Run) -> str:
    return run.stack.model_package_group


def _describe_group(run: Run) -> dict | None:
    try:
        return run.client("sagemaker").describe_model_package_group(ModelPackageGroupName=group(run))
    except ClientError as err:
        if not sagemaker_not_found(err):
            raise
        return None


def ensure_group(run: Run) -> None:
    if _describe_group(run) is not None:
        run.apply("model package group", group(run), "unchanged")
        return
    if run.apply("model package group", group(run), "create", "versions wait for approval"):
        run.client("sagemaker").create_model_package_group(
            ModelPackageGroupName=group(run),
            ModelPackageGroupDescription=run.stack.registry.description
            or f"Kennel stack {run.stack.name}: the models it may serve",
            Tags=run.tag_list(),
        )


def _require_registry(run: Run) -> None:
    if run.stack.registry is None:
        raise DeployError(
            f"{run.stack.path} has no [registry] table: add one (empty is enough) to register models"
        )


def register(run: Run, model_data_url: str, manifest: dict[str, Any], source: str) -> Version:
    """Registers the model at `model_data_url` (with the serving image of this release) as a new version,
    PendingManualApproval. `manifest` is its model directory's manifest; `source` says where it came from
    when no training job made it."""
    _require_registry(run)
    s3.ensure_bucket(run)
    ecr.ensure_repository(run, "serve")
    image = ecr.ensure_image(run, "serve")
    ensure_group(run)
    provenance = manifest.get("provenance") or {}
    origin = {"training_job": provenance.get("training_job"), "git_revision": provenance.get("git_sha")}
    origin = {key: value for key, value in origin.items() if value}
    arn = run.client("sagemaker").create_model_package(
        ModelPackageGroupName=group(run),
        ModelPackageDescription=f"{model_data_url}, from {origin.get('training_job', source)}",
        InferenceSpecification=_inference_specification(run, image, model_data_url),
        ModelApprovalStatus=PENDING,
        ModelMetrics={"ModelQuality": {"Statistics": _upload_statistics(run, manifest)}},
        MetadataProperties={
            **({"GeneratedBy": origin["training_job"]} if "training_job" in origin else {}),
            **({"CommitId": origin["git_revision"]} if "git_revision" in origin else {}),
        },
        **({"CustomerMetadataProperties": origin} if origin else {}),
        Tags=run.tag_list(),
    )["ModelPackageArn"]
    return _version(run, arn)


def register_model_dir(run: Run, model_dir: Path) -> Version:
    """Uploads a local model directory as `up` does for `[model] dir`, then registers it."""
    _require_registry(run)
    s3.ensure_bucket(run)
    uri = s3.upload_model_dir(run, model_dir)
    return register(run, uri, json.loads((model_dir / MANIFEST_FILE).read_text()), str(model_dir))


def register_training_job(run: Run, job: str) -> Version:
    """Registers a completed training job's model.tar.gz, with the manifest read from inside it."""
    _require_registry(run)
    uri = s3.training_output(run, job)
    manifest = _manifest_in_archive(run, uri)
    provenance = manifest.setdefault("provenance", {})
    provenance["training_job"] = provenance.get("training_job") or job
    return register(run, uri, manifest, job)


def _manifest_in_archive(run: Run, uri: str) -> dict[str, Any]:
    """manifest.json from a model.tar.gz in S3, read as a stream up to that file."""
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = run.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    with tarfile.open(fileobj=body, mode="r|gz") as tar:
        for member in tar:
            if member.isfile() and member.name.removeprefix("./") == MANIFEST_FILE:
                return json.loads(tar.extractfile(member).read())
    raise DeployError(f"{uri} holds no {MANIFEST_FILE}: it is not a Kennel model (docs/model-format.md)")


def _inference_specification(run: Run, image: str, model_data_url: str) -> dict[str, Any]:
    stack = run.stack
    realtime = [stack.endpoint.instance_type] if stack.endpoint.instance_type else []
    transform = [stack.transform.instance_type] if stack.transform else []
    return {
        "Containers": [{"Image": image, "ModelDataUrl": model_data_url}],
        "SupportedContentTypes": list(CONTENT_TYPES),
        "SupportedResponseMIMETypes": list(RESPONSE_TYPES),
        **({"SupportedRealtimeInferenceInstanceTypes": realtime} if realtime else {}),
        **({"SupportedTransformInstanceTypes": transform} if transform else {}),
    }


def statistics(manifest: dict[str, Any]) -> dict[str, Any]:
    """The registry's model quality statistics: the manifest's figures that it has."""
    figures = {
        name: {"value": float(value)}
        for name, section, key in METRICS
        if (value := (manifest.get(section) or {}).get(key)) is not None
    }
    return {"multiclass_classification_metrics": figures}


def _upload_statistics(run: Run, manifest: dict[str, Any]) -> dict[str, str]:
    body = json.dumps(statistics(manifest), sort_keys=True).encode()
    key = f"{run.stack.prefix}/registry/{hashlib.sha256(body).hexdigest()[:16]}.json"
    run.client("s3").put_object(
        Bucket=run.stack.bucket, Key=key, Body=body, ContentType="application/json", Tagging="project=kennel"
    )
    return {"ContentType": "application/json", "S3Uri": f"s3://{run.stack.bucket}/{key}"}


def _read_metrics(run: Run, described: dict) -> dict[str, float]:
    source = described.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics")
    if not source:
        return {}
    bucket, key = source["S3Uri"].removeprefix("s3://").split("/", 1)
    s3_client = run.client("s3")
    try:
        document = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3_client.exceptions.NoSuchKey:
        return {}
    figures = document.get("multiclass_classification_metrics", {})
    return {name: float(figure["value"]) for name, figure in figures.items()}


def _version(run: Run, arn: str) -> Version:
    described = run.client("sagemaker").describe_model_package(ModelPackageName=arn)
    metadata = described.get("MetadataProperties", {})
    return Version(
        number=described["ModelPackageVersion"],
        arn=described["ModelPackageArn"],
        status=described["ModelApprovalStatus"],
        created=described["CreationTime"],
        reason=described.get("ApprovalDescription") or None,
        training_job=metadata.get("GeneratedBy"),
        revision=metadata.get("CommitId"),
        metrics=_read_metrics(run, described),
    )


def _summaries(run: Run, **filters: str) -> list[dict]:
    """The group's versions, newest first (none when the group does not exist)."""
    pages = (
        run.client("sagemaker")
        .get_paginator("list_model_packages")
        .paginate(ModelPackageGroupName=group(run), **filters)
    )
    try:
        found = [summary for page in pages for summary in page["ModelPackageSummaryList"]]
    except ClientError as err:
        if not sagemaker_not_found(err):
            raise
        return []
    return sorted(found, key=lambda summary: summary["ModelPackageVersion"], reverse=True)


def versions(run: Run) -> list[Version]:
    """Every version of the group, newest first."""
    return [_version(run, summary["ModelPackageArn"]) for summary in _summaries(run)]


def version(run: Run, number: int) -> Version:
    for summary in _summaries(run):
        if summary["ModelPackageVersion"] == number:
            return _version(run, summary["ModelPackageArn"])
    raise DeployError(
        f"model package group {group(run)} has no version {number}: "
        f"`python -m deploy models --stack {run.stack.path} list` shows the versions"
    )


def latest_approved(run: Run) -> Version | None:
    """The approved version with the highest number (the newest registered), if any."""
    approved = _summaries(run, ModelApprovalStatus=APPROVED)
    return _version(run, approved[0]["ModelPackageArn"]) if approved else None


def _set_status(run: Run, number: int, status: str, reason: str | None) -> Version:
    found = version(run, number)
    run.client("sagemaker").update_model_package(
        ModelPackageArn=found.arn,
        ModelApprovalStatus=status,
        **({"ApprovalDescription": reason} if reason else {}),
    )
    return _version(run, found.arn)


def approve(run: Run, number: int, reason: str | None = None) -> Version:
    return _set_status(run, number, APPROVED, reason)


def reject(run: Run, number: int, reason: str | None = None) -> Version:
    """Rejects version `number`, `reason` kept as its ApprovalDescription. An automatic rollback calls
    this with the version `up` deployed (`serving_version`, before the rollback) and what went wrong."""
    return _set_status(run, number, REJECTED, reason)


def serving_version(run: Run) -> Version | None:
    """The registry version the endpoint's live config serves; None when there is no endpoint or its
    model does not come from this stack's registry."""
    described = endpoint.describe(run)
    if described is None:
        return None
    sagemaker = run.client("sagemaker")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    containers = [model.get("PrimaryContainer", {}), *model.get("Containers", [])]
    packages = [c["ModelPackageName"] for c in containers if c.get("ModelPackageName")]
    if not packages:
        return None
    try:
        return _version(run, packages[0])
    except ClientError as err:
        if not sagemaker_not_found(err):
            raise
        return None


def _approve_hint(run: Run, number: str) -> str:
    return f"`python -m deploy models --stack {run.stack.path} approve {number}`"


def deployable(run: Run) -> Version | None:
    """The version `[model] package` names, refused unless it is Approved; None without `package`."""
    package = run.stack.model.package
    if package is None:
        return None
    if package == LATEST_APPROVED:
        found = latest_approved(run)
        if found is None:
            raise DeployError(
                f'model.package = "{LATEST_APPROVED}", but model package group {group(run)} has no '
                f"approved version: register one (`train --wait`, `promote` or `models register`), "
                f"check it with `models list`, then approve it with {_approve_hint(run, 'N')}"
            )
        return found
    found = version(run, package)
    if found.status != APPROVED:
        reason = f": {found.reason}" if found.reason else ""
        raise DeployError(
            f"model.package = {package}: version {package} of model package group {group(run)} is "
            f"{found.status}{reason}; only an approved version is served: approve it with "
            f"{_approve_hint(run, str(package))} or name an approved version"
        )
    return found


def served(run: Run, found: Version) -> str:
    """What `plan` says of the model step: the version that would serve, and what it replaces."""
    current = serving_version(run)
    if current is not None and current.number == found.number:
        return f"{group(run)} {found.describe()}, serving now"
    if current is not None:
        replaces = f"replaces version {current.number}"
    elif endpoint.describe(run) is not None:
        replaces = "replaces a model from outside the registry"
    else:
        replaces = "no endpoint yet"
    return f"{group(run)} {found.describe()}; {replaces}"


def model_data_url(run: Run, arn: str) -> str:
    """The model archive a version serves (its one container's ModelDataUrl)."""
    described = run.client("sagemaker").describe_model_package(ModelPackageName=arn)
    return described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]


def delete_group(run: Run) -> None:
    """Deletes every version, their statistics files, then the group (what is gone counts as done)."""
    if _describe_group(run) is None:
        return
    sagemaker, stack = run.client("sagemaker"), run.stack
    for summary in _summaries(run):
        name = f"{group(run)}/{summary['ModelPackageVersion']}"
        if run.apply("model package", name, "delete"):
            try:
                sagemaker.delete_model_package(ModelPackageName=summary["ModelPackageArn"])
            except ClientError as err:
                if not sagemaker_not_found(err):
                    raise
    pages = (
        run.client("s3")
        .get_paginator("list_objects_v2")
        .paginate(Bucket=stack.bucket, Prefix=f"{stack.prefix}/registry/")
    )
    for key in [obj["Key"] for page in pages for obj in page.get("Contents", [])]:
        if run.apply("s3 model statistics", key, "delete"):
            run.client("s3").delete_object(Bucket=stack.bucket, Key=key)
    if run.apply("model package group", group(run), "delete"):
        try:
            sagemaker.delete_model_package_group(ModelPackageGroupName=group(run))
        except ClientError as err:
            if not sagemaker_not_found(err):
                raise


def table(found: list[Version]) -> list[str]:
    """`models list`: one row per version, newest first."""
    header = [
        "version",
        "status",
        "created (UTC)",
        "val acc",
        "test acc",
        "INT8 agreement",
        "training job",
        "revision",
        "reason",
    ]

    def figure(v: Version, name: str) -> str:
        return f"{v.metrics[name]:.4f}" if name in v.metrics else "-"

    rows = [
        [
            str(v.number),
            v.status,
            v.created.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            figure(v, "validation_accuracy"),
            figure(v, "test_accuracy"),
            figure(v, "int8_agreement"),
            v.training_job or "-",
            (v.revision or "-")[:12],
            v.reason or "-",
        ]
        for v in found
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
