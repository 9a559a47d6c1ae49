"""Endpoint configurations: one production variant with its instance type and count and its start-up
timeouts. Configs are immutable; the name carries a hash of the settings, so a new model or new settings
give a new config, which is what a blue/green update switches to."""

import hashlib
import json
from typing import Any

from botocore.exceptions import ClientError

from deploy.aws import Run, is_not_found

PREFIX = "config-"


def variant(run: Run, model: str) -> dict[str, Any]:
    endpoint = run.stack.endpoint
    return {
        "VariantName": endpoint.variant,
        "ModelName": model,
        "InstanceType": endpoint.instance_type,
        "InitialInstanceCount": endpoint.instance_count,
        "InitialVariantWeight": 1.0,
        "ContainerStartupHealthCheckTimeoutInSeconds": endpoint.startup_health_check_timeout_seconds,
        "ModelDataDownloadTimeoutInSeconds": endpoint.model_download_timeout_seconds,
    }


def data_capture(run: Run) -> dict[str, Any] | None:
    """SageMaker data capture of requests and answers, or None when the stack leaves it off. JSON bodies
    are captured as text; images are captured base64-encoded, as SageMaker does for binary types."""
    capture = run.stack.endpoint.data_capture
    if capture is None:
        return None
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": capture.sampling_percentage,
        "DestinationS3Uri": run.stack.s3_uri(capture.prefix),
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }


def _definition(run: Run, model: str) -> dict[str, Any]:
    """What the config's name hashes: the variant, and data capture when on (so turning it on or off
    is a new config, rolled out blue/green like any other change)."""
    capture = data_capture(run)
    return variant(run, model) if capture is None else {**variant(run, model), "DataCaptureConfig": capture}


def config_name(run: Run, model: str) -> str:
    digest = hashlib.sha256(json.dumps(_definition(run, model), sort_keys=True).encode()).hexdigest()[:12]
    return f"{run.stack.name}-{PREFIX}{digest}"


def describe(run: Run, name: str) -> dict | None:
    try:
        return run.client("sagemaker").describe_endpoint_config(EndpointConfigName=name)
    except ClientError as err:
        if is_not_found(err):
            return None
        raise


def ensure_endpoint_config(run: Run, model: str) -> str:
    name = config_name(run, model)
    if describe(run, name):
        run.apply("endpoint config", name, "unchanged")
    elif run.apply(
        "endpoint config",
        name,
        "create",
        f"{run.stack.endpoint.instance_count} x {run.stack.endpoint.instance_type}" + _capture_detail(run),
    ):
        capture = data_capture(run)
        run.client("sagemaker").create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[variant(run, model)],
            Tags=run.tag_list(),
            **({"DataCaptureConfig": capture} if capture else {}),
        )
    return name


def _capture_detail(run: Run) -> str:
    capture = data_capture(run)
    if capture is None:
        return ""
    return f", data capture {capture['InitialSamplingPercentage']}% to {capture['DestinationS3Uri']}/"


def delete_endpoint_configs(run: Run, keep: str | None = None) -> None:
    sagemaker = run.client("sagemaker")
    prefix = f"{run.stack.name}-{PREFIX}"
    pages = sagemaker.get_paginator("list_endpoint_configs").paginate(NameContains=prefix)
    for name in sorted(c["EndpointConfigName"] for page in pages for c in page["EndpointConfigs"]):
        if name.startswith(prefix) and name != keep and run.apply("endpoint config", name, "delete"):
            try:
                sagemaker.delete_endpoint_config(EndpointConfigName=name)
            except ClientError as err:
                if not is_not_found(err):
                    raise
