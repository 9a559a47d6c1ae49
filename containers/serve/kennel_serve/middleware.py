"""What wraps every request: its id, its count and latency in the metrics, and its one JSON log line."""

import logging
import string
import time
import uuid
from collections.abc import Collection

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kennel_serve.metrics import ServingMetrics

log = logging.getLogger("kennel_serve")
# SageMaker's own limit on InvokeEndpoint's InferenceId, which reaches the container as
# X-Amzn-SageMaker-Inference-Id; a caller in front of the container directly could send anything.
MAX_REQUEST_ID_CHARS = 64
REQUEST_ID_CHARS = frozenset(string.ascii_letters + string.digits + "-_.:")


def bounded_request_id(inference_id: str | None) -> str:
    """The caller's id as this request's id, within bounds: its first 64 characters, each one outside
    letters, digits and `-_.:` replaced by `_`, so that what is logged and echoed stays short and plain.
    A fresh id when the caller sends none."""
    inference_id = (inference_id or "").strip()
    if not inference_id:
        return uuid.uuid4().hex
    return "".join(c if c in REQUEST_ID_CHARS else "_" for c in inference_id[:MAX_REQUEST_ID_CHARS])


def request_id(request: Request) -> str:
    """The id RequestContext gave this request."""
    return request.scope.get("state", {}).get("request_id", "")


class RequestContext:
    """Gives each request an id (X-Amzn-SageMaker-Inference-Id, bounded, when the caller sends one),
    returns it in X-Request-Id, counts and times the request, and logs one JSON line for it. Successful
    pings and metric scrapes are counted but not logged: SageMaker pings every few seconds. Metrics label a
    request by its path when it is one of `routes`, else "other", so that unknown paths cannot grow the
    label set."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics, routes: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        request_id = bounded_request_id(headers.get("x-amzn-sagemaker-inference-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope["path"] if scope["path"] in self.routes else "other"
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            if status != 200 or route not in ("/ping", "/metrics"):
                log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "ms": round(seconds * 1000, 2),
                        "content_type": headers.get("content-type"),
                        "content_length": headers.get("content-length"),
                    },
                )
