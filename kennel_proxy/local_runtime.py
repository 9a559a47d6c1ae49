"""InvokeEndpoint against a serving container's /invocations, for running the proxy without AWS.

endpoint.py uses it instead of the sagemaker-runtime client when KENNEL_LOCAL_ENDPOINT_URL is set (for
example `http://serve:8080` in docker compose). It does what the SageMaker SDK's local mode does: POST the
body to /invocations with Content-Type, Accept and X-Amzn-SageMaker-Custom-Attributes. A non-2xx answer is
raised as the same botocore ClientError that SageMaker raises for a container error (code ModelError, with
OriginalStatusCode and OriginalMessage), so the proxy maps both the same way. Part of the Lambda zip
(standard library and botocore); it is inert unless the variable is set.

A connection dropped before an answer came (a server shutting down closes connections it has not read
yet; a killed one drops everything) is tried again, up to `max_attempts` in all with botocore's standard
backoff, as the sagemaker-runtime client's standard retry mode does on AWS (it retries
ConnectionClosedError). Refused connections and timeouts are answered at once, so an outage shows.
"""

import http.client
import io
import random
import time
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from botocore.response import StreamingBody


class LocalRuntime:
    """The subset of boto3's sagemaker-runtime client that the proxy calls."""

    def __init__(self, base_url: str, connect_timeout_s: float, read_timeout_s: float, max_attempts: int = 1):
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"KENNEL_LOCAL_ENDPOINT_URL must be an http(s) URL, not {base_url!r}")
        self._url = f"{base_url.rstrip('/')}/invocations"
        self._parts = parts
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_attempts = max_attempts

    def invoke_endpoint(
        self,
        *,
        EndpointName: str,
        Body: bytes,
        ContentType: str,
        Accept: str,
        CustomAttributes: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Content-Type": ContentType, "Accept": Accept}
        if CustomAttributes is not None:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = CustomAttributes
        for attempt in range(1, self._max_attempts + 1):
            try:
                status, answer_headers, body = self._post(Body, headers)
                break
            except ConnectionError:  # sent, then dropped before an answer: what botocore retries
                if attempt == self._max_attempts:
                    raise
                # botocore's standard mode for an error that is not throttling: a random wait of up to
                # 50 ms x 2^(attempt-1), at most 20 s (botocore.retries.standard.ExponentialBackoff).
                time.sleep(random.uniform(0, min(0.05 * 2 ** (attempt - 1), 20)))
        if not 200 <= status < 300:
            raise _model_error(status, body)
        return {
            "Body": StreamingBody(io.BytesIO(body), len(body)),
            "ContentType": answer_headers.get("Content-Type", "application/octet-stream"),
            "InvokedProductionVariant": "local",
            "CustomAttributes": answer_headers.get("X-Amzn-SageMaker-Custom-Attributes"),
        }

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One POST on a new connection: the status, headers and body of the answer."""
        connection_class = (
            http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(self._parts.hostname, self._parts.port, timeout=self._connect_timeout_s)
        try:
            try:
                connection.connect()
            except TimeoutError as err:
                raise ConnectTimeoutError(endpoint_url=self._url) from err
            except OSError as err:
                raise EndpointConnectionError(endpoint_url=self._url) from err
            connection.sock.settimeout(self._read_timeout_s)
            try:
                connection.request("POST", self._parts.path.rstrip("/") + "/invocations", body, headers)
                response = connection.getresponse()
                return response.status, response.headers, response.read()
            except TimeoutError as err:
                raise ReadTimeoutError(endpoint_url=self._url) from err
        finally:
            connection.close()


def _model_error(status: int, body: bytes) -> ClientError:
    """The error SageMaker raises when the container answers `status`: HTTP 424, code ModelError."""
    message = body.decode("utf-8", errors="replace")
    kind = "client" if status < 500 else "server"
    return ClientError(
        {
            "Error": {
                "Code": "ModelError",
                "Message": f'Received {kind} error ({status}) from primary with message "{message}".',
            },
            "OriginalStatusCode": status,
            "OriginalMessage": message,
            "ResponseMetadata": {"HTTPStatusCode": 424},
        },
        "InvokeEndpoint",
    )
