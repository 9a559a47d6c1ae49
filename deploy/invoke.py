"""Send one image through the Lambda's `live` alias (as a function URL request) or straight to the
endpoint, and return the predictions."""

import base64
import json
import mimetypes
import uuid
from pathlib import Path
from typing import Any

from deploy import function, poll
from deploy.aws import DeployError, Run

# The first wait for an async result, at most; the waits then grow to the run's poll interval.
ASYNC_FIRST_SECONDS = 5


def content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def via_endpoint(run: Run, image: Path) -> Any:
    response = run.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=run.stack.endpoint_name,
        ContentType=content_type(image),
        Accept="application/json",
        Body=image.read_bytes(),
    )
    return _decode(response["Body"].read())


def via_lambda(run: Run, image: Path) -> Any:
    event = {
        "version": "2.0",
        "rawPath": "/invocations",
        "headers": {"content-type": content_type(image), "accept": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/invocations"}},
        "body": base64.b64encode(image.read_bytes()).decode(),
        "isBase64Encoded": True,
    }
    response = run.client("lambda").invoke(
        FunctionName=run.stack.function_name, Qualifier=function.ALIAS, Payload=json.dumps(event).encode()
    )
    payload = _decode(response["Payload"].read())
    if response.get("FunctionError"):
        raise DeployError(f"{run.stack.function_name} failed", json.dumps(payload))
    if isinstance(payload, dict) and "statusCode" in payload:
        body = payload.get("body", "")
        if payload.get("isBase64Encoded"):
            body = base64.b64decode(body)
        if payload["statusCode"] >= 400:
            raise DeployError(f"{run.stack.function_name} answered HTTP {payload['statusCode']}", str(body))
        return _decode(body)
    return payload


def _decode(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def via_async(run: Run, image: Path, wait_seconds: float = 900) -> Any:
    """Uploads the image to the stack's async input prefix, calls InvokeEndpointAsync and waits for the
    result object (returned) or the failure object (raised, with its content)."""
    stack = run.stack
    settings = stack.endpoint.async_inference
    if settings is None:
        raise DeployError(
            f"endpoint {stack.endpoint_name} is {stack.endpoint.kind}; "
            '--async needs [endpoint] kind = "async"'
        )
    s3, key = run.client("s3"), f"{stack.prefix}/{settings.input_prefix}/{uuid.uuid4().hex}{image.suffix}"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=image.read_bytes(), ContentType=content_type(image))
    answer = run.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=stack.endpoint_name,
        InputLocation=f"s3://{stack.bucket}/{key}",
        ContentType=content_type(image),
        Accept="application/json",
    )
    output, failure = answer["OutputLocation"], answer.get("FailureLocation")
    run.say(f"queued as {answer.get('InferenceId', key)}; waiting for {output}")

    def answered() -> bytes | None:
        body = _read_s3(run, output)
        failed = _read_s3(run, failure) if body is None and failure else None
        if failed is not None:
            raise DeployError(f"async request failed ({failure})", failed.decode(errors="replace"))
        return body

    body = poll.until(
        answered,
        what="no result",
        within=wait_seconds,
        first=min(run.poll_seconds, ASYNC_FIRST_SECONDS),
        cap=max(run.poll_seconds, ASYNC_FIRST_SECONDS),
        hint=f"it will appear at {output} (or {failure}); check later",
    )
    return _decode(body)


def _read_s3(run: Run, uri: str) -> bytes | None:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    s3 = run.client("s3")
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
