"""Kennel's Lambda proxy: an HTTP request with an image in, the SageMaker endpoint's predictions out.

Deploy: deploy/ zips this package's modules (not local_adapter.py or page/; boto3 comes with the Lambda
runtime), with handler `kennel_proxy.proxy.handler` and SAGEMAKER_ENDPOINT_NAME set; the function's role
needs only sagemaker:InvokeEndpoint on that endpoint. Call it through a function URL or API Gateway:

    curl -X POST --data-binary @docs/sample.jpg -H 'Content-Type: image/jpeg' "$URL?top_k=3"
    curl -X POST -H 'Content-Type: application/json' -d '{"url": "https://images.example.com/dog.jpg"}' "$URL"

or directly: `aws lambda invoke --function-name NAME --cli-binary-format raw-in-base64-out
--payload '{"image": "<base64>", "top_k": 3}' out.json`. Locally, local_adapter.py serves the same
handler over HTTP and KENNEL_LOCAL_ENDPOINT_URL sends InvokeEndpoint to a serving container.

Requests: POST with an image body (image/*, application/x-image), or JSON {"image": "<base64>"} or
{"url": "https://..."} (fetched here under safe_fetch's rules, never by the endpoint); optional top_k as a
query parameter or JSON field. Answers are JSON: the predictions, or {"error", "type", "request_id"}, for
any event at all: the handler never raises. JSON bodies are read within JSON_LIMITS (lambda/README.md).

Settings are environment variables, read on the first invocation of each cold start, when `handler`
builds its `Proxy` (settings, sagemaker-runtime client, URL fetcher) and keeps it for the warm invocations
after it: defaults.py lists each variable with its default. A missing or malformed one fails that first
invocation, naming the variable. Tests and the local adapter build a `Proxy` of their own.

The modules behind this handler, each with one job, are described in lambda/README.md.
"""

import json
import os
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from .cors import cors_headers, preflight_headers
from .endpoint import Runtime, invoke, runtime_client
from .errors import ProxyError
from .events import ProxyRequest, Reply, parse_event
from .safe_fetch import UrlFetcher
from .settings import Settings
from .validation import read_image

# On every reply: the request id (also in error bodies) and, on predictions, which model computed them.
REQUEST_ID_HEADER = "X-Request-Id"
PRECISION_HEADER = "X-Kennel-Precision"


@dataclass(frozen=True)
class Proxy:
    """What answering a request needs besides the request: the settings, the endpoint's client and the URL
    fetcher."""

    settings: Settings
    runtime: Runtime
    fetcher: UrlFetcher

    @classmethod
    def from_settings(
        cls, settings: Settings, runtime: Runtime | None = None, fetcher: UrlFetcher | None = None
    ) -> "Proxy":
        """The proxy for `settings`, with the client and fetcher they describe unless given."""
        return cls(
            settings,
            runtime_client(settings) if runtime is None else runtime,
            UrlFetcher(settings.fetch_policy()) if fetcher is None else fetcher,
        )

    def answer(self, request: ProxyRequest, request_id: str) -> Reply:
        """The whole request, from parsed event to reply, with no I/O but the endpoint and the URL fetch."""
        cors = cors_headers(request.origin, self.settings.cors_allow_origins)
        try:
            if request.method == "OPTIONS":
                return Reply(204, b"", {**cors, **preflight_headers(cors)})
            if request.method != "POST":
                raise ProxyError(405, "method_not_allowed", "use POST", headers={"Allow": "POST, OPTIONS"})
            image, content_type, top_k = read_image(request, self.settings.max_image_bytes, self.fetcher)
            prediction = invoke(self.runtime, self.settings.endpoint_name, image, content_type, top_k)
            headers = {"Content-Type": "application/json", REQUEST_ID_HEADER: request_id, **cors}
            if prediction.precision:
                headers[PRECISION_HEADER] = prediction.precision
            return Reply(200, prediction.body, headers)
        except ProxyError as err:
            return error_reply(err, request_id, cors)

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        """One invocation: parse, answer, log one JSON line. It never raises, whatever the event: a raise
        would reach the caller as Lambda's bare 502, with no JSON body and no request id."""
        started = time.monotonic()
        request_id = getattr(context, "aws_request_id", None)
        request_id = request_id if isinstance(request_id, str) and request_id else str(uuid.uuid4())
        kind = "unknown"
        try:
            request = parse_event(event)
            kind = request.kind
            reply = self.answer(request, request_id)
        except ProxyError as err:
            reply = error_reply(err, request_id, {})
        except Exception:  # a bug: the traceback goes to the log, the caller gets the request id
            bug = ProxyError(
                500, "internal_error", "the proxy failed on this request; the log has its request id"
            )
            reply = error_reply(bug, request_id, {})
            reply = Reply(
                reply.status, reply.body, reply.headers, reply.error_type, detail=traceback.format_exc()
            )
        log = {
            "request_id": request_id,
            "endpoint": self.settings.endpoint_name,
            "status": reply.status,
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
            "event": kind,
            "error": reply.error_type,
            "model_status": reply.model_status,
            "detail": reply.detail,
        }
        print(json.dumps(log), flush=True)
        return reply.as_lambda_response()


def error_reply(err: ProxyError, request_id: str, cors: Mapping[str, str]) -> Reply:
    """The one place an error becomes a reply: {"error", "type", "request_id", ...} with its status. The
    cause, which may carry SageMaker's own message with account ids, goes to the log line only."""
    body = {"error": err.message, "type": err.type, "request_id": request_id, **err.extra}
    return Reply(
        err.status,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", REQUEST_ID_HEADER: request_id, **cors, **err.headers},
        error_type=err.type,
        model_status=err.extra.get("model_status"),
        detail=str(err.__cause__) if err.__cause__ else None,
    )


@cache
def default_proxy() -> Proxy:
    """The proxy that the environment describes, built on first use and kept: warm invocations reuse its
    client and its connections."""
    return Proxy.from_settings(Settings.from_env(os.environ))


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point (kennel_proxy.proxy.handler): `Proxy.handle` with the default proxy."""
    return default_proxy().handle(event, context)


# Provisioned concurrency runs the init phase before any request arrives: build the proxy there, so its
# first request does not pay for the client. Elsewhere (on demand, tests, the local adapter) importing
# builds nothing, and the first invocation builds it.
if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "provisioned-concurrency":
    default_proxy()
