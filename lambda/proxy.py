"""Kennel's Lambda proxy: an HTTP request with an image in, the SageMaker endpoint's predictions out.

Deploy: deploy/ zips proxy.py, safe_fetch.py and local_runtime.py (boto3 comes with the Lambda runtime),
with handler `proxy.handler` and SAGEMAKER_ENDPOINT_NAME set; the function's role needs only
sagemaker:InvokeEndpoint on that endpoint. Call it through a function URL or API Gateway:

    curl -X POST --data-binary @dog.jpg -H 'Content-Type: image/jpeg' "$URL?top_k=3"
    curl -X POST -H 'Content-Type: application/json' -d '{"url": "https://images.example.com/dog.jpg"}' "$URL"

or directly: `aws lambda invoke --function-name NAME --cli-binary-format raw-in-base64-out
--payload '{"image": "<base64>", "top_k": 3}' out.json`. Locally, local_adapter.py serves the same
handler over HTTP and KENNEL_LOCAL_ENDPOINT_URL sends InvokeEndpoint to a serving container.

Requests: POST with an image body (image/*, application/x-image), or JSON {"image": "<base64>"} or
{"url": "https://..."} (fetched here under safe_fetch's rules, never by the endpoint); optional top_k as a
query parameter or JSON field. Answers are JSON: the predictions, or {"error", "type", "request_id"}, for
any event at all: the handler never raises. JSON bodies are read within JSON_LIMITS (lambda/README.md).

Settings (environment, read once per cold start):
    SAGEMAKER_ENDPOINT_NAME            required
    KENNEL_ALLOWED_URL_HOSTS           comma-separated `host` or `host:port`; empty: URL bodies refused
    KENNEL_MAX_IMAGE_BYTES             6291456
    KENNEL_URL_CONNECT_TIMEOUT_S       2       KENNEL_URL_READ_TIMEOUT_S      5 (whole fetch)
    KENNEL_INVOKE_CONNECT_TIMEOUT_S    2       KENNEL_INVOKE_READ_TIMEOUT_S   20
    KENNEL_RETRY_MODE                  standard (or adaptive)
    KENNEL_MAX_ATTEMPTS                3       (botocore's count, first try included)
    KENNEL_CORS_ALLOW_ORIGINS          comma-separated origins or `*`; empty: no CORS headers
    KENNEL_LOCAL_ENDPOINT_URL          unset; e.g. http://serve:8080 to skip AWS
"""

import base64
import binascii
import json
import os
import re
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError
from local_runtime import LocalRuntime
from safe_fetch import FetchError, FetchPolicy, UrlFetcher

ACCEPT = "application/json"
IMAGE_TYPES_WITHOUT_PREFIX = frozenset({"application/x-image"})
JSON_FIELDS = frozenset({"image", "url", "top_k"})
MAX_TOP_K = 1000
RETRY_AFTER_S = "1"
RETRY = {"Retry-After": RETRY_AFTER_S}
# The one table of limits on a JSON body (and on a direct invocation's event), checked before parsing: a
# request needs depth 1 and 3 values. The body as a whole is bounded by KENNEL_MAX_IMAGE_BYTES.
JSON_LIMITS = {
    "max_depth": 8,  # nested arrays and objects
    "max_values": 1000,  # values in the document, keys not counted
    "max_number_chars": 40,  # digits, sign, point and exponent of one number
    "max_key_chars": 256,  # one object key
}
# botocore's own list of throttling codes (botocore.retries.standard), the ones an AWS service sends.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    }
)


@dataclass(frozen=True)
class Settings:
    endpoint_name: str
    allowed_url_hosts: frozenset[str] = frozenset()
    max_image_bytes: int = 6 * 1024 * 1024
    url_connect_timeout_s: float = 2.0
    url_read_timeout_s: float = 5.0
    invoke_connect_timeout_s: float = 2.0
    invoke_read_timeout_s: float = 20.0
    retry_mode: str = "standard"
    max_attempts: int = 3
    cors_allow_origins: frozenset[str] = frozenset()
    local_endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        """Reads the KENNEL_* settings; a missing or malformed value fails the cold start, by name."""
        endpoint = env.get("SAGEMAKER_ENDPOINT_NAME", "").strip()
        if not endpoint:
            raise ValueError("SAGEMAKER_ENDPOINT_NAME must name the SageMaker endpoint")
        retry_mode = env.get("KENNEL_RETRY_MODE", "standard")
        if retry_mode not in {"standard", "adaptive"}:
            raise ValueError(f"KENNEL_RETRY_MODE must be standard or adaptive, not {retry_mode!r}")
        return cls(
            endpoint_name=endpoint,
            allowed_url_hosts=_names(env.get("KENNEL_ALLOWED_URL_HOSTS", "")),
            max_image_bytes=_positive(env, "KENNEL_MAX_IMAGE_BYTES", int, cls.max_image_bytes),
            url_connect_timeout_s=_positive(env, "KENNEL_URL_CONNECT_TIMEOUT_S", float, 2.0),
            url_read_timeout_s=_positive(env, "KENNEL_URL_READ_TIMEOUT_S", float, 5.0),
            invoke_connect_timeout_s=_positive(env, "KENNEL_INVOKE_CONNECT_TIMEOUT_S", float, 2.0),
            invoke_read_timeout_s=_positive(env, "KENNEL_INVOKE_READ_TIMEOUT_S", float, 20.0),
            retry_mode=retry_mode,
            max_attempts=_positive(env, "KENNEL_MAX_ATTEMPTS", int, 3),
            cors_allow_origins=_names(env.get("KENNEL_CORS_ALLOW_ORIGINS", "")),
            local_endpoint_url=env.get("KENNEL_LOCAL_ENDPOINT_URL") or None,
        )

    def fetch_policy(self) -> FetchPolicy:
        return FetchPolicy(
            allowed_hosts=self.allowed_url_hosts,
            max_bytes=self.max_image_bytes,
            connect_timeout_s=self.url_connect_timeout_s,
            read_timeout_s=self.url_read_timeout_s,
        )


def _names(value: str) -> frozenset[str]:
    return frozenset(name.strip().lower() for name in value.split(",") if name.strip())


def _positive(env: Mapping[str, str], name: str, kind: type, default: Any) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise ValueError(f"{name} must be a positive {kind.__name__}, not {raw!r}")
    return value


class Runtime(Protocol):
    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]: ...


def runtime_client(settings: Settings) -> Runtime:
    """The sagemaker-runtime client with botocore's retries, or the serving container in local mode."""
    if settings.local_endpoint_url:
        return LocalRuntime(
            settings.local_endpoint_url, settings.invoke_connect_timeout_s, settings.invoke_read_timeout_s
        )
    config = Config(
        connect_timeout=settings.invoke_connect_timeout_s,
        read_timeout=settings.invoke_read_timeout_s,
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
    )
    return boto3.client("sagemaker-runtime", config=config)


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
        """The proxy-integration response shape, which payload 1.0, 2.0 and direct callers all read."""
        return {
            "statusCode": self.status,
            "headers": dict(self.headers),
            "body": self.body.decode("utf-8"),
            "isBase64Encoded": False,
        }


class ProxyError(Exception):
    """Any request that ends without predictions; turned into a response in `answer` only. The cause,
    which may carry SageMaker's own message with account ids, goes to the log line, never the response."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def parse_event(event: Any) -> ProxyRequest:
    """API Gateway REST (payload 1.0), HTTP API and function URLs (2.0), or a direct invocation. Fields of
    the wrong type read as absent; an event that is no JSON document is a 400 ProxyError."""
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


def answer(
    request: ProxyRequest, request_id: str, settings: Settings, runtime: Runtime, fetcher: UrlFetcher
) -> Reply:
    """The whole request, from parsed event to reply, with no I/O but the endpoint and the URL fetch."""
    cors = _cors_headers(request.origin, settings.cors_allow_origins)
    try:
        if request.method == "OPTIONS":
            return Reply(204, b"", {**cors, **_preflight_headers(cors)})
        if request.method != "POST":
            raise ProxyError(405, "method_not_allowed", "use POST", headers={"Allow": "POST, OPTIONS"})
        image, content_type, top_k = _read_image(request, settings, fetcher)
        predictions = _invoke(runtime, settings.endpoint_name, image, content_type, top_k)
        return Reply(200, predictions, {"Content-Type": "application/json", **cors})
    except ProxyError as err:
        return error_reply(err, request_id, cors)


def error_reply(err: ProxyError, request_id: str, cors: Mapping[str, str]) -> Reply:
    """The one place an error becomes a reply: {"error", "type", "request_id", ...} with its status."""
    body = {"error": err.message, "type": err.type, "request_id": request_id, **err.extra}
    return Reply(
        err.status,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", **cors, **err.headers},
        error_type=err.type,
        model_status=err.extra.get("model_status"),
        detail=str(err.__cause__) if err.__cause__ else None,
    )


def _cors_headers(origin: str | None, allowed: frozenset[str]) -> dict[str, str]:
    if "*" in allowed:
        return {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Retry-After"}
    if origin and origin.lower() in allowed:
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": "Retry-After",
            "Vary": "Origin",
        }
    return {}


def _preflight_headers(cors: Mapping[str, str]) -> dict[str, str]:
    if not cors:
        return {}
    return {
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
    }


def _read_image(
    request: ProxyRequest, settings: Settings, fetcher: UrlFetcher
) -> tuple[bytes, str, int | None]:
    """The image bytes, their content type and the requested top-k, or a 4xx ProxyError."""
    top_k = _top_k(request.query.get("top_k"))
    if request.content_type.startswith("image/") or request.content_type in IMAGE_TYPES_WITHOUT_PREFIX:
        return _body_bytes(request, settings.max_image_bytes), request.content_type, top_k
    if request.content_type != "application/json":
        raise ProxyError(
            415,
            "unsupported_media_type",
            "send an image (image/jpeg, image/png, application/x-image) or application/json",
        )
    document = strict_json(_body_bytes(request, settings.max_image_bytes))
    if not isinstance(document, dict):
        raise ProxyError(
            400, "invalid_json", 'the JSON body must be an object: {"image": ...} or {"url": ...}'
        )
    unknown = sorted(set(document) - JSON_FIELDS)
    if unknown:
        raise ProxyError(400, "invalid_json", f"unknown fields: {', '.join(unknown)[:200]}")
    if top_k is None:
        top_k = _top_k(document.get("top_k"))
    if ("image" in document) == ("url" in document):
        raise ProxyError(400, "invalid_json", 'give exactly one of "image" (base64) and "url"')
    if "image" in document:
        return _decode_base64(document["image"], settings.max_image_bytes), "application/x-image", top_k
    if not isinstance(document["url"], str):
        raise ProxyError(400, "invalid_json", '"url" must be a string')
    try:
        fetched = fetcher.fetch(document["url"])
    except FetchError as err:
        raise ProxyError(err.status, err.type, str(err)) from err
    return fetched.body, fetched.content_type, top_k


def _body_bytes(request: ProxyRequest, limit: int) -> bytes:
    if not request.body:
        raise ProxyError(400, "empty_body", "the request has no body")
    if request.body_is_base64:
        return _decode_base64(request.body, limit)
    try:
        body = request.body.encode("utf-8") if isinstance(request.body, str) else request.body
    except UnicodeEncodeError as err:  # a lone surrogate, which an event's JSON can carry as \ud800
        raise ProxyError(400, "invalid_body", "the body is not Unicode text; send it base64-encoded") from err
    if len(body) > limit:
        raise ProxyError(413, "image_too_large", f"the body is larger than {limit} bytes")
    return body


def _decode_base64(value: Any, limit: int) -> bytes:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str) or not value:
        raise ProxyError(400, "invalid_base64", "the image must be a non-empty base64 string")
    if len(value) // 4 * 3 > limit + 2:
        raise ProxyError(413, "image_too_large", f"the image is larger than {limit} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ProxyError(400, "invalid_base64", "the image is not valid base64") from err
    if not data:
        raise ProxyError(400, "empty_body", "the image is empty")
    if len(data) > limit:
        raise ProxyError(413, "image_too_large", f"the image is larger than {limit} bytes")
    return data


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_LONG_NUMBER = re.compile(rf"[-+0-9.eE]{{{JSON_LIMITS['max_number_chars'] + 1},}}")


def strict_json(data: bytes) -> Any:
    """The document in `data`, or a 400 ProxyError that names the rule it broke: UTF-8 only, no NaN or
    Infinity, no duplicate keys, no lone surrogates, and within JSON_LIMITS. The limits are checked on the
    text with its strings emptied (regular expressions and counts, linear and in C) before json.loads runs."""

    def refuse(message: str) -> ProxyError:
        return ProxyError(400, "invalid_json", message)

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("the body is not UTF-8: JSON must be UTF-8 text") from None
    skeleton = _JSON_STRING.sub('""', text)
    values = skeleton.count(",") + skeleton.count("[") + skeleton.count("{") + 1
    brackets = _NOT_BRACKET.sub("", skeleton)
    if values > JSON_LIMITS["max_values"] or len(brackets) > 2 * JSON_LIMITS["max_values"]:
        raise refuse(f"the JSON holds more than {JSON_LIMITS['max_values']} values")
    if _LONG_NUMBER.search(skeleton):
        raise refuse(f"a number is longer than {JSON_LIMITS['max_number_chars']} characters")
    steps = ({"[": 1, "{": 1}.get(c, -1) for c in brackets)
    if max(accumulate(steps), default=0) > JSON_LIMITS["max_depth"]:
        raise refuse(f"the JSON is nested more than {JSON_LIMITS['max_depth']} levels deep")

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _ in pairs}) != len(pairs):
            raise refuse("a key appears twice in one object")
        if any(len(key) > JSON_LIMITS["max_key_chars"] for key, _ in pairs):
            raise refuse(f"a key is longer than {JSON_LIMITS['max_key_chars']} characters")
        return dict(pairs)

    def no_constant(name: str) -> Any:
        raise refuse(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")

    try:
        document = json.loads(text, object_pairs_hook=unique_keys, parse_constant=no_constant)
        json.dumps(document, ensure_ascii=False).encode("utf-8")  # bounded now; fails on a lone surrogate
    except ProxyError:
        raise
    except UnicodeEncodeError:
        raise refuse("a string holds a lone surrogate (\\ud800-\\udfff): not Unicode text") from None
    except (ValueError, RecursionError) as err:
        raise refuse(f"the body is not valid JSON: {err}") from None
    return document


def _top_k(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise ProxyError(400, "invalid_top_k", f"top_k must be an integer from 1 to {MAX_TOP_K}")
    return value


def _invoke(runtime: Runtime, endpoint: str, image: bytes, content_type: str, top_k: int | None) -> bytes:
    """The endpoint's JSON predictions; every failure becomes a ProxyError with its HTTP status."""
    arguments: dict[str, Any] = {
        "EndpointName": endpoint,
        "Body": image,
        "ContentType": content_type,
        "Accept": ACCEPT,
    }
    if top_k is not None:
        arguments["CustomAttributes"] = f"top_k={top_k}"
    unreachable = ProxyError(502, "endpoint_unreachable", "the model endpoint could not be reached", RETRY)
    try:
        response = runtime.invoke_endpoint(**arguments)
        body = response["Body"].read()
    except ClientError as err:
        raise _client_error(err) from err
    except ConnectTimeoutError as err:  # nothing was sent: safe to retry
        raise unreachable from err
    except ReadTimeoutError as err:
        raise ProxyError(504, "endpoint_timeout", "the model endpoint did not answer in time") from err
    except BotoCoreError as err:  # refused, or no route: the request never reached the model
        raise unreachable from err
    except OSError as err:  # sent, then the connection dropped (a container killed while it worked)
        raise ProxyError(
            502, "endpoint_connection_lost", "the model endpoint dropped the connection; retry", RETRY
        ) from err
    try:
        json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ProxyError(502, "invalid_model_response", "the model endpoint did not answer JSON") from err
    return body


def _client_error(err: ClientError) -> ProxyError:
    """SageMaker's errors as the client should see them; messages that carry account ids stay in the log."""
    response = err.response
    code = response.get("Error", {}).get("Code", "")
    message = response.get("Error", {}).get("Message", "")
    http_status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    retry = RETRY
    if code == "ModelError":
        model_status = response.get("OriginalStatusCode")
        if not model_status and "timed out" in message:
            return ProxyError(504, "model_timeout", "the model did not answer in time")
        # A 4xx from the model is the client's own mistake (an undecodable image, an unsupported type):
        # it goes back with its status, so clients do not retry it as they would a 502.
        if isinstance(model_status, int) and 400 <= model_status < 500:
            status, kind, text = model_status, "model_rejected_input", "the model rejected the input"
        elif model_status == 503:  # the container is up but its model is (re)loading
            return ProxyError(
                503, "endpoint_unavailable", "the model is loading; retry later", RETRY, {"model_status": 503}
            )
        else:
            status, kind, text = 502, "model_error", "the model failed to answer"
        return ProxyError(
            status,
            kind,
            text,
            extra={
                "model_status": model_status,
                "model_error": _maybe_json(response.get("OriginalMessage", "")),
            },
        )
    if code == "ValidationError" and "not found" in message.lower():
        return ProxyError(
            503, "endpoint_not_found", "the model endpoint does not exist (or is being deleted)"
        )
    if code in {"ModelNotReadyException", "ServiceUnavailable"}:
        return ProxyError(503, "endpoint_unavailable", "the model endpoint is not ready; retry later", retry)
    if code in THROTTLING_CODES or http_status == 429:
        return ProxyError(429, "throttled", "too many requests to the model endpoint; retry later", retry)
    if code == "ValidationError":
        return ProxyError(502, "endpoint_rejected", "the model endpoint rejected the request")
    return ProxyError(502, "endpoint_error", "the model endpoint failed")


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return text


SETTINGS = Settings.from_env(os.environ)
RUNTIME = runtime_client(SETTINGS)
FETCHER = UrlFetcher(SETTINGS.fetch_policy())


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point: parse, answer, log one JSON line. It never raises, whatever the event: a
    raise would reach the caller as Lambda's bare 502, with no JSON body and no request id."""
    started = time.monotonic()
    request_id = getattr(context, "aws_request_id", None)
    request_id = request_id if isinstance(request_id, str) and request_id else str(uuid.uuid4())
    kind = "unknown"
    try:
        request = parse_event(event)
        kind = request.kind
        reply = answer(request, request_id, SETTINGS, RUNTIME, FETCHER)
    except ProxyError as err:
        reply = error_reply(err, request_id, {})
    except Exception:  # a bug: the traceback goes to the log, the caller gets the request id
        reply = error_reply(
            ProxyError(500, "internal_error", "the proxy failed on this request; the log has its request id"),
            request_id,
            {},
        )
        reply = Reply(
            reply.status, reply.body, reply.headers, reply.error_type, detail=traceback.format_exc()
        )
    log = {
        "request_id": request_id,
        "endpoint": SETTINGS.endpoint_name,
        "status": reply.status,
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
        "event": kind,
        "error": reply.error_type,
        "model_status": reply.model_status,
        "detail": reply.detail,
    }
    print(json.dumps(log), flush=True)
    return reply.as_lambda_response()
