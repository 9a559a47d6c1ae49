"""The one call the proxy makes: InvokeEndpoint, through boto3's sagemaker-runtime client with botocore's
retries, or to a serving container when KENNEL_LOCAL_ENDPOINT_URL is set (local_runtime.py)."""

import json
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .errors import ProxyError, endpoint_error
from .local_runtime import LocalRuntime
from .settings import Settings

ACCEPT = "application/json"


@dataclass(frozen=True)
class Prediction:
    """The endpoint's JSON answer, and which of the model's precisions computed it (None: not said)."""

    body: bytes
    precision: str | None = None


class Runtime(Protocol):
    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]: ...


def runtime_client(settings: Settings) -> Runtime:
    """The sagemaker-runtime client with botocore's retries, or the serving container in local mode."""
    if settings.local_endpoint_url:
        return LocalRuntime(
            settings.local_endpoint_url,
            settings.invoke_connect_timeout_s,
            settings.invoke_read_timeout_s,
            settings.max_attempts,
        )
    config = Config(
        connect_timeout=settings.invoke_connect_timeout_s,
        read_timeout=settings.invoke_read_timeout_s,
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
    )
    return boto3.client("sagemaker-runtime", config=config)


def invoke(runtime: Runtime, endpoint: str, image: bytes, content_type: str, top_k: int | None) -> Prediction:
    """The endpoint's JSON predictions; every failure becomes a ProxyError with its HTTP status."""
    arguments: dict[str, Any] = {
        "EndpointName": endpoint,
        "Body": image,
        "ContentType": content_type,
        "Accept": ACCEPT,
    }
    if top_k is not None:
        arguments["CustomAttributes"] = f"top_k={top_k}"
    try:
        response = runtime.invoke_endpoint(**arguments)
        body = response["Body"].read()
    except (ClientError, BotoCoreError, OSError) as err:
        raise endpoint_error(err) from err
    try:
        json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ProxyError(502, "invalid_model_response", "the model endpoint did not answer JSON") from err
    return Prediction(body, precision_of(response.get("CustomAttributes")))


def precision_of(custom_attributes: str | None) -> str | None:
    """The `precision=int8` that the serving image puts in its response's custom attributes (comma- or
    semicolon-separated, as SageMaker's are), when its value is one short lowercase word; else None."""
    for item in (custom_attributes or "").replace(";", ",").split(","):
        name, _, value = item.strip().partition("=")
        if name == "precision" and 0 < len(value) <= 16 and value.isascii() and value.isalnum():
            return value if value == value.lower() else None
    return None
