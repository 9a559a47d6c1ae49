"""The SageMaker model: serving image + model archive + execution role, or a version of the model
registry (`[model] package`) + execution role; network-isolated unless the stack says
`endpoint.network_isolation = false`. Models are immutable, so the name carries a hash of what defines it
and a change means a new model."""

import hashlib
import json

from botocore.exceptions import ClientError

from deploy import poll
from deploy.aws import Run, sagemaker_not_found

PREFIX = "model-"
# How long a new execution role gets to become assumable by SageMaker.
IAM_SPREAD_SECONDS = 60


def model_name(run: Run, *sources: str) -> str:
    """The name of the model made from `sources` (image and archive, or a model package; then the role)."""
    defining = [*sources] + ([environment(run)] if environment(run) else [])
    # Models made before isolation existed were not isolated: the marker gives isolated ones a new name.
    if run.stack.endpoint.network_isolation:
        defining.append("network-isolated")
    digest = hashlib.sha256(json.dumps(defining).encode()).hexdigest()[:12]
    return f"{run.stack.name}-{PREFIX}{digest}"


def ensure_model(run: Run, image_uri: str, model_data_url: str, role_arn: str) -> str:
    return _ensure(
        run,
        model_name(run, image_uri, model_data_url, role_arn),
        {"Image": image_uri, "ModelDataUrl": model_data_url},
        role_arn,
        created=f"{image_uri} + {model_data_url}",
    )


def ensure_package_model(run: Run, package_arn: str, role_arn: str, served: str) -> str:
    """The model of a model registry version; `served` says in `plan` which version and what it replaces."""
    name = model_name(run, package_arn, role_arn)
    return _ensure(run, name, {"ModelPackageName": package_arn}, role_arn, created=served, kept=served)


def _ensure(run: Run, name: str, container: dict, role_arn: str, created: str, kept: str = "") -> str:
    """Creates model `name` from `container` unless it exists; `created` and `kept` describe it in `plan`."""
    sagemaker = run.client("sagemaker")
    try:
        sagemaker.describe_model(ModelName=name)
        run.apply("sagemaker model", name, "unchanged", kept)
        return name
    except ClientError as err:
        if not sagemaker_not_found(err):
            raise
    if run.apply("sagemaker model", name, "create", f"{created}; {network(run)}"):
        # A role created moments ago may not be assumable yet: IAM is eventually consistent.
        def create() -> bool | None:
            try:
                sagemaker.create_model(
                    ModelName=name,
                    PrimaryContainer=container
                    | ({"Environment": environment(run)} if environment(run) else {}),
                    ExecutionRoleArn=role_arn,
                    EnableNetworkIsolation=run.stack.endpoint.network_isolation,
                    Tags=run.tag_list(),
                )
                return True
            except ClientError as err:
                if not _role_not_assumable_yet(err):
                    raise
                return None

        poll.until(
            create,
            what=f"SageMaker could still not assume {role_arn}",
            within=IAM_SPREAD_SECONDS,
            first=run.poll_seconds / 3,
            cap=run.poll_seconds,
            hint="IAM has not spread the role yet; run the command again",
        )
    return name


def delete_models(run: Run, keep: str | None = None) -> None:
    """Deletes this stack's models (all but `keep`)."""
    sagemaker = run.client("sagemaker")
    prefix = f"{run.stack.name}-{PREFIX}"
    pages = sagemaker.get_paginator("list_models").paginate(NameContains=prefix)
    for name in sorted(m["ModelName"] for page in pages for m in page["Models"]):
        if name.startswith(prefix) and name != keep and run.apply("sagemaker model", name, "delete"):
            try:
                sagemaker.delete_model(ModelName=name)
            except ClientError as err:
                if not sagemaker_not_found(err):
                    raise


def _role_not_assumable_yet(err: ClientError) -> bool:
    """CreateModel models no error for a role IAM has not spread yet: a ValidationException that says
    the role could not be assumed, the only sign to wait on."""
    error = err.response.get("Error", {})
    return error.get("Code") == "ValidationException" and "assume" in error.get("Message", "").lower()


def environment(run: Run) -> dict[str, str]:
    """The serving container's environment beyond its defaults: an async endpoint takes bodies up to
    `[endpoint.async] max_payload_mb` (SageMaker hands it the S3 object; the pixel guard still applies)."""
    settings = run.stack.endpoint.async_inference
    return {"SAGEMAKER_MAX_PAYLOAD_IN_MB": str(settings.max_payload_mb)} if settings else {}


def network(run: Run) -> str:
    """What `plan` says of the model's network: isolated (the serving container needs none), or open."""
    if run.stack.endpoint.network_isolation:
        return "network isolated"
    if run.stack.endpoint.kind == "serverless":
        return "network open (serverless endpoints cannot be isolated)"
    return "network open (endpoint.network_isolation = false)"
