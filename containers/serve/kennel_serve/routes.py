"""SageMaker's hosting contract (GET /ping, POST /invocations, GET /execution-parameters) and GET /metrics.
Each route reads the request, hands the work to the runtime and answers. What a route needs of the app (the
model's state, the settings, the metrics) it reads from `request.app.state`, where create_app puts them:
FastAPI dependencies would read the same, at a cost on every request."""

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from kennel_serve.codecs import InferenceError
from kennel_serve.loading import ModelState
from kennel_serve.metrics import ServingMetrics
from kennel_serve.middleware import request_id
from kennel_serve.openapi import INVOCATIONS_OPENAPI
from kennel_serve.runtime import Invocation
from kennel_serve.settings import MIB, Settings

log = logging.getLogger("kennel_serve")
PRECISION_HEADER = "X-Kennel-Precision"  # int8 or fp32: which model answered (absent for custom models)
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
router = APIRouter()


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


@router.get("/ping")
async def ping(request: Request) -> Response:
    state: ModelState = request.app.state.model
    if state.status == "ready":
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": state.status, "reason": state.reason}, status_code=503)


@router.post("/invocations", openapi_extra=INVOCATIONS_OPENAPI)
async def invocations(request: Request) -> Response:
    state: ModelState = request.app.state.model
    settings: Settings = request.app.state.settings
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
        raise InferenceError(500, "internal_error", "the model failed on this request; see the log") from None
    return Response(content, media_type=content_type, headers=precision_headers(state))


def precision_headers(state: ModelState) -> dict[str, str] | None:
    """Which model answered: X-Kennel-Precision, and the same as `precision=...` in the response's custom
    attributes, the one container header that SageMaker hands back to an InvokeEndpoint caller (as
    CustomAttributes), so the proxy can tell its clients on AWS too."""
    classifier = state.runtime.classifier if state.runtime else None
    if classifier is None:
        return None
    return {PRECISION_HEADER: classifier.precision, CUSTOM_ATTRIBUTES: f"precision={classifier.precision}"}


@router.get("/execution-parameters")
async def execution_parameters(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
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


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    metrics: ServingMetrics = request.app.state.metrics
    content, media_type = metrics.exposition()
    return Response(content, media_type=media_type)
