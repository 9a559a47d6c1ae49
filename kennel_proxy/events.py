"""What comes in and what goes out: API Gateway REST (payload 1.0), HTTP API and function URL (payload
2.0) events and direct invocations, read into one `ProxyRequest`; and the `Reply` in the proxy-integration
response shape, which payload 1.0, 2.0 and direct callers all read."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ProxyError


@dataclass(frozen=True)
class ProxyRequest:
    """What the handler needs from any kind of event; `body` is still base64 when `body_is_base64`."""

    method: str
    content_type: str
    body: str | bytes
    body_is_base64: bool = False
    query: Mapping[str, str] = field(default_factory=dict)
    origin: str | None = None
    kind: str = "direct"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]
    error_type: str | None = None
    model_status: int | None = None
    detail: str | None = None

    def as_lambda_response(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "headers": dict(self.headers),
            "body": self.body.decode("utf-8"),
            "isBase64Encoded": False,
        }


def parse_event(event: Any) -> ProxyRequest:
    """The request in `event`. Fields of the wrong type read as absent; an event that is no JSON document
    is a 400 ProxyError."""
    if isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event:
        method = str(_mapping(_mapping(event["requestContext"]).get("http")).get("method", ""))
        kind = "http-v2"
    elif isinstance(event, dict) and "httpMethod" in event:
        method = str(event["httpMethod"])
        kind = "http-v1"
    else:
        try:
            body = json.dumps(event).encode()
        except (TypeError, ValueError, RecursionError) as err:
            raise ProxyError(
                400, "invalid_json", "the event is not a JSON document within the limits"
            ) from err
        return ProxyRequest(method="POST", content_type="application/json", body=body, kind="direct")
    headers = {str(k).lower(): str(v) for k, v in _mapping(event.get("headers")).items()}
    body = event.get("body")
    return ProxyRequest(
        method=method.upper(),
        content_type=headers.get("content-type", "").split(";")[0].strip().lower(),
        body=body if isinstance(body, str) and body else "",
        body_is_base64=event.get("isBase64Encoded") is True,
        query={str(k): str(v) for k, v in _mapping(event.get("queryStringParameters")).items()},
        origin=headers.get("origin"),
        kind=kind,
    )


def _mapping(value: Any) -> Mapping[Any, Any]:
    return value if isinstance(value, dict) else {}
