"""The FastAPI app: SageMaker's hosting contract (GET /ping, POST /invocations, GET /execution-parameters)
plus /metrics. Routes read, delegate to the runtime, and answer; every error becomes the same JSON body in
`error_response`, the one place that builds one.

    uvicorn --factory kennel_serve.app:create_app --port 8080     # settings from the environment
"""

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kennel_serve.codecs import RESPONSE_TYPES, InferenceError
from kennel_serve.handler import CustomHandlerRuntime, handler_path
from kennel_serve.metrics import ServingMetrics
from kennel_serve.model import ImageClassifier, ModelLoadError
from kennel_serve.runtime import ClassifierRuntime, Invocation, Runtime
from kennel_serve.settings import MIB, Settings

log = logging.getLogger("kennel_serve")
ROUTES = ("/ping", "/invocations", "/execution-parameters", "/metrics")
PRECISION_HEADER = "X-Kennel-Precision"  # int8 or fp32: which model answered (absent for custom models)


@dataclass
class ModelState:
    """What /ping reports, kept in memory so that /ping never waits for anything."""

    status: str = "loading"
    reason: str = "the model is loading"
    runtime: Runtime | None = None


def load_runtime(settings: Settings, metrics: ServingMetrics) -> Runtime:
    """A custom handler if the model directory has one, else the Kennel model. Blocking: runs on a thread."""
    if handler_path(settings).is_file():
        return CustomHandlerRuntime(settings)
    return ClassifierRuntime(
        ImageClassifier(settings.model_dir, settings.threads_per_worker, settings.precision),
        settings,
        metrics,
    )


async def _in_daemon_thread(function: Callable[[], Runtime]) -> Runtime:
    """Runs `function` on a daemon thread: a model_fn that never returns must not keep the process alive
    after SIGTERM (asyncio.to_thread's pool threads are joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Runtime] = loop.create_future()

    def settle(result: object, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def work() -> None:
        try:
            result, error = function(), None
        except BaseException as err:  # handed to the awaiting coroutine, which decides
            result, error = None, err
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped while loading
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="model-load", daemon=True).start()
    return await future


async def _load(state: ModelState, settings: Settings, metrics: ServingMetrics) -> None:
    try:
        runtime = await _in_daemon_thread(lambda: load_runtime(settings, metrics))
    except ModelLoadError as err:
        state.status, state.reason = "failed", str(err)
        log.error("model load failed: %s", err)
        return
    except Exception as err:  # anything else is a bug or a broken file; /ping must still say what happened
        state.status, state.reason = "failed", f"the model failed to load: {err!r}"
        log.exception("model load failed")
        return
    runtime.start()
    metrics.model_load_seconds.set(runtime.load_seconds)
    state.runtime, state.status, state.reason = runtime, "ready", ""
    classifier = runtime.classifier
    log.info(
        "model ready",
        extra={
            "load_seconds": round(runtime.load_seconds, 3),
            "kind": type(runtime).__name__,
            # Which model answers, and the accuracy guard's figures for the INT8 one.
            "precision": classifier.precision if classifier else None,
            "requested_precision": settings.precision,
            "quantization": classifier.manifest.quantization if classifier else None,
        },
    )


def error_response(request_id: str, error: InferenceError) -> JSONResponse:
    body = {
        "error": error.message,
        "type": error.kind,
        "status": error.status,
        "request_id": request_id,
        **error.details,
    }
    return JSONResponse(body, status_code=error.status)


class RequestContext:
    """Gives each request an id (X-Amzn-SageMaker-Inference-Id when the caller sends one), returns it in
    X-Request-Id, counts and times the request, and logs one JSON line for it. Successful pings and metric
    scrapes are counted but not logged: SageMaker pings every few seconds."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        request_id = headers.get("x-amzn-sagemaker-inference-id") or uuid.uuid4().hex
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
            route = scope["path"] if scope["path"] in ROUTES else "other"
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


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit`: from Content-Length before
    reading, and while reading (chunked uploads have no Content-Length)."""

    def too_large(size: str) -> InferenceError:
        return InferenceError(
            413,
            "payload_too_large",
            f"the body is {size} bytes; the limit is {limit} bytes ({limit / MIB:g} MiB), "
            "set by SAGEMAKER_MAX_PAYLOAD_IN_MB",
            limit_bytes=limit,
            setting="SAGEMAKER_MAX_PAYLOAD_IN_MB",
        )

    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large(length)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"more than {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


INVOCATIONS_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/x-image": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["instances"],
                    "properties": {
                        "instances": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["b64"],
                                "properties": {"b64": {"type": "string", "format": "byte"}},
                            },
                        }
                    },
                }
            },
            "application/jsonlines": {"schema": {"type": "string"}},
        },
    },
    "parameters": [
        {"name": "Accept", "in": "header", "required": False, "schema": {"type": "string"}},
        {
            "name": "X-Amzn-SageMaker-Custom-Attributes",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
        },
        {
            "name": "X-Amzn-SageMaker-Inference-Id",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
        },
    ],
    "responses": {
        "200": {
            "description": "Per image, the top-k predictions, or the network's scores (output=scores)",
            "content": {kind: {"schema": {"type": ["object", "array"]}} for kind in RESPONSE_TYPES},
        },
        **{
            str(status): {"description": text}
            for status, text in {
                400: "undecodable image, bad base64 or bad JSON",
                406: "no acceptable response type",
                413: "body over SAGEMAKER_MAX_PAYLOAD_IN_MB",
                415: "unsupported Content-Type",
                503: "the model is not loaded",
                504: "past SAGEMAKER_MODEL_SERVER_TIMEOUT",
            }.items()
        },
    },
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The serving app. With no argument, settings come from the environment (how `serve` starts it)."""
    settings = settings or Settings.from_env()
    metrics = ServingMetrics()
    state = ModelState()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Loading runs in the background: the server accepts connections at once and /ping says "loading".
        loading = asyncio.create_task(_load(state, settings, metrics))
        yield
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        if state.runtime is not None:
            await state.runtime.close()
        metrics.close()

    app = FastAPI(title="Kennel serving", version="1", lifespan=lifespan)
    app.state.model = state
    app.state.settings = settings
    app.add_middleware(RequestContext, metrics=metrics)

    def request_id(request: Request) -> str:
        return request.scope.get("state", {}).get("request_id", "")

    @app.exception_handler(InferenceError)
    async def inference_error(request: Request, error: InferenceError) -> JSONResponse:
        return error_response(request_id(request), error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(request_id(request), InferenceError(error.status_code, kind, str(error.detail)))

    @app.get("/ping")
    async def ping() -> Response:
        if state.status == "ready":
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": state.status, "reason": state.reason}, status_code=503)

    @app.post("/invocations", openapi_extra=INVOCATIONS_OPENAPI)
    async def invocations(request: Request) -> Response:
        if state.runtime is None:
            raise InferenceError(503, "model_not_ready", state.reason)
        headers = request.headers
        try:
            async with asyncio.timeout(settings.timeout_s):
                body = await read_body(request, settings.max_payload_bytes)
                content, content_type = await state.runtime.invoke(
                    Invocation(
                        body=body,
                        content_type=headers.get("content-type"),
                        accept=headers.get("accept"),
                        custom_attributes=headers.get("x-amzn-sagemaker-custom-attributes"),
                        request_id=request_id(request),
                    )
                )
        except TimeoutError:
            raise InferenceError(
                504,
                "timeout",
                f"no answer within {settings.timeout_s:g} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)",
            ) from None
        except InferenceError:
            raise
        except Exception:
            # A bug or a failing custom handler: the traceback goes to the log, the client gets the id.
            log.exception("invocation failed", extra={"request_id": request_id(request)})
            raise InferenceError(
                500, "internal_error", "the model failed on this request; see the log"
            ) from None
        headers = {PRECISION_HEADER: state.runtime.classifier.precision} if state.runtime.classifier else None
        return Response(content, media_type=content_type, headers=headers)

    @app.get("/execution-parameters")
    async def execution_parameters() -> JSONResponse:
        # SageMaker requires MaxConcurrentTransforms x MaxPayloadInMB <= 100.
        transforms = min(settings.max_concurrent_transforms, 100)
        payload_mb = max(1, min(int(settings.max_payload_bytes // MIB), 100 // transforms))
        return JSONResponse(
            {
                "MaxConcurrentTransforms": transforms,
                "BatchStrategy": settings.batch_strategy,
                "MaxPayloadInMB": payload_mb,
            }
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        content, media_type = metrics.exposition()
        return Response(content, media_type=media_type)

    log.info("settings", extra={"settings": settings.describe()})
    return app
