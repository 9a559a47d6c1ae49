"""The proxy's one error type, and what the endpoint's failures mean to the client: every failure of
InvokeEndpoint becomes a ProxyError with the status a client can act on (retry or not). The cause, which may
carry SageMaker's own message with account ids, goes to the log line, never into the response."""

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

RETRY_AFTER_S = "1"
RETRY = {"Retry-After": RETRY_AFTER_S}
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


class ProxyError(Exception):
    """Any request that ends without predictions, with the status and `type` the client sees; the
    handler turns it into the reply."""

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


def endpoint_error(err: Exception) -> ProxyError:
    """An exception from InvokeEndpoint (or reading its answer) as the client should see it."""
    if isinstance(err, ClientError):
        return _client_error(err)
    if isinstance(err, ConnectTimeoutError):  # nothing was sent: safe to retry
        return _unreachable()
    if isinstance(err, ReadTimeoutError):
        return ProxyError(504, "endpoint_timeout", "the model endpoint did not answer in time")
    if isinstance(err, BotoCoreError):  # refused, or no route: the request never reached the model
        return _unreachable()
    # OSError: sent, then the connection dropped (a container killed while it worked).
    return ProxyError(
        502, "endpoint_connection_lost", "the model endpoint dropped the connection; retry", RETRY
    )


def _unreachable() -> ProxyError:
    return ProxyError(502, "endpoint_unreachable", "the model endpoint could not be reached", RETRY)


def _client_error(err: ClientError) -> ProxyError:
    """SageMaker's errors as the client should see them; messages that carry account ids stay in the log."""
    response = err.response
    code = response.get("Error", {}).get("Code", "")
    message = response.get("Error", {}).get("Message", "")
    http_status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
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
        return ProxyError(503, "endpoint_unavailable", "the model endpoint is not ready; retry later", RETRY)
    if code in THROTTLING_CODES or http_status == 429:
        return ProxyError(429, "throttled", "too many requests to the model endpoint; retry later", RETRY)
    if code == "ValidationError":
        return ProxyError(502, "endpoint_rejected", "the model endpoint rejected the request")
    return ProxyError(502, "endpoint_error", "the model endpoint failed")


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return text
