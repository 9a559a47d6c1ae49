"""The one place an error becomes a response: every failure, ours (InferenceError) or the router's (404,
405), answers {"error", "type", "status", "request_id", ...details} with its status."""

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from kennel_serve import middleware
from kennel_serve.codecs import InferenceError


def error_response(request_id: str, error: InferenceError) -> JSONResponse:
    body = {
        "error": error.message,
        "type": error.kind,
        "status": error.status,
        "request_id": request_id,
        **error.details,
    }
    return JSONResponse(body, status_code=error.status)


async def inference_error(request: Request, error: InferenceError) -> JSONResponse:
    return error_response(middleware.request_id(request), error)


async def http_error(request: Request, error: HTTPException) -> JSONResponse:
    kind = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return error_response(
        middleware.request_id(request), InferenceError(error.status_code, kind, str(error.detail))
    )


EXCEPTION_HANDLERS = {InferenceError: inference_error, HTTPException: http_error}
