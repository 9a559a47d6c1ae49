"""The SageMaker model: serving image + model archive + execution role, network-isolated unless the stack
says `endpoint.network_isolation = false`. Models are immutable, so the name carries a hash of what
defines it and a change means a new model."""

import hashlib
import json

from botocore.exceptions import ClientError

from deploy import poll
from deploy.aws import Run, sagemaker_not_found

PREFIX = "model-"
# How long a new execution role gets to become assumable by SageMaker.
IAM_SPREAD_SECONDS = 60


def model_name(run: Run, image_uri: str, model_data_url: str, role_arn: str) -> str:
    defining = [image_uri, model_data_url, role_arn] + ([environment(run)] if environment(run) else [])
    # Models made before isolation existed were not isolated: the marker gives isolated ones a new name.
    if run.stack.endpoint.network_isolation:
        defining.append("network-isolated")
    digest = hashlib.sha256(json.dumps(defining).encode()).hexdigest()[:12]
    return f"{run.stack.name}-{PREFIX}{digest}"


def ensure_model(run: Run, image_uri: str, model_data_url: str, role_arn: str) -> str:
    sagemaker = run.client("sagemaker")
    name = model_name(run, image_uri, model_data_url, role_arn)
    try:
        sagemaker.describe_model(ModelName=name)
        run.apply("sagemaker model", name, "unchanged")
        return name
    except ClientError as err:
        if not sagemaker_not_found(err):
            raise
    if run.apply("sagemaker model", name, "create", f"{image_uri} + {model_data_url}; {network(run)}"):
        # A role created moments ago may not be assumable yet: IAM is eventually consistent.
        def create() -> bool | None:
            try:
                sagemaker.create_model(
                    ModelName=name,
                    PrimaryContainer={"Image": image_uri, "ModelDataUrl": model_data_url}
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
