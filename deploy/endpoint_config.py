"""Endpoint configurations: one production variant with its instance type and count and its start-up
timeouts. Configs are immutable; the name carries a hash of the settings, so a new model or new settings
give a new config, which is what a blue/green update switches to."""

import hashlib
import json
from typing import Any

from botocore.exceptions import ClientError

from deploy import topics
from deploy.aws import Run, sagemaker_not_found

PREFIX = "config-"


def variant(run: Run, model: str) -> dict[str, Any]:
    endpoint = run.stack.endpoint
    if endpoint.kind == "serverless":
        return serverless_variant(run, model)
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
    defining: Any = _definition(run, model)
    if run.stack.endpoint.kind == "async":
        defining = [defining, async_config(run)]
    digest = hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:12]
    return f"{run.stack.name}-{PREFIX}{digest}"


def describe(run: Run, name: str) -> dict | None:
    try:
        return run.client("sagemaker").describe_endpoint_config(EndpointConfigName=name)
    except ClientError as err:
        if sagemaker_not_found(err):
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
        summary(run) + _capture_detail(run),
    ):
        capture = data_capture(run)
        run.client("sagemaker").create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[variant(run, model)],
            Tags=run.tag_list(),
            **({"DataCaptureConfig": capture} if capture else {}),
            **kind_settings(run),
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
                if not sagemaker_not_found(err):
                    raise


def serverless_variant(run: Run, model: str) -> dict[str, Any]:
    """A serverless variant: memory and concurrency instead of instances; SageMaker runs the start-up."""
    serverless = run.stack.endpoint.serverless
    config = {"MemorySizeInMB": serverless.memory_size_mb, "MaxConcurrency": serverless.max_concurrency}
    if serverless.provisioned_concurrency:
        config["ProvisionedConcurrency"] = serverless.provisioned_concurrency
    return {"VariantName": run.stack.endpoint.variant, "ModelName": model, "ServerlessConfig": config}


def async_config(run: Run) -> dict[str, Any]:
    """AsyncInferenceConfig: where results and failures go, which topics hear of them, and how many
    requests each instance takes from the queue at once."""
    settings = run.stack.endpoint.async_inference
    output = {
        "S3OutputPath": run.stack.s3_uri(settings.output_prefix),
        "S3FailurePath": run.stack.s3_uri(settings.failure_prefix),
    }
    notify = {}
    if settings.success_topic:
        notify["SuccessTopic"] = topics.topic_arn(run, topics.success_topic(run.stack))
    if settings.error_topic:
        notify["ErrorTopic"] = topics.topic_arn(run, topics.error_topic(run.stack))
    if notify:
        output["NotificationConfig"] = notify
    return {
        "ClientConfig": {
            "MaxConcurrentInvocationsPerInstance": settings.max_concurrent_invocations_per_instance
        },
        "OutputConfig": output,
    }


def kind_settings(run: Run) -> dict[str, Any]:
    """The extra CreateEndpointConfig arguments of the stack's endpoint kind."""
    return {"AsyncInferenceConfig": async_config(run)} if run.stack.endpoint.kind == "async" else {}


def summary(run: Run) -> str:
    endpoint = run.stack.endpoint
    if endpoint.kind == "serverless":
        provisioned = endpoint.serverless.provisioned_concurrency
        return (
            f"serverless {endpoint.serverless.memory_size_mb} MB, up to {endpoint.serverless.max_concurrency}"
            f" concurrent" + (f", {provisioned} provisioned" if provisioned else "")
        )
    count = f"{endpoint.instance_count} x {endpoint.instance_type}"
    return f"async, {count}" if endpoint.kind == "async" else count


def live_kind(config: dict) -> str:
    """The kind of a described endpoint config."""
    if any("ServerlessConfig" in v for v in config.get("ProductionVariants", [])):
        return "serverless"
    return "async" if config.get("AsyncInferenceConfig") else "realtime"
