"""Send one image through the Lambda's `live` alias (as a function URL request) or straight to the
endpoint, and return the predictions."""

import base64
import json
import mimetypes
from pathlib import Path
from typing import Any

from deploy import function
from deploy.aws import DeployError, Run


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
