"""Serves the Lambda handler over plain HTTP, the way a function URL would, for the local stack.

    export SAGEMAKER_ENDPOINT_NAME=local KENNEL_LOCAL_ENDPOINT_URL=http://127.0.0.1:8080
    python -m kennel_proxy.local_adapter
    curl -X POST --data-binary @docs/sample.jpg -H 'Content-Type: image/jpeg' 'http://127.0.0.1:9000/?top_k=3'

In docker compose it runs as the `proxy` service (lambda/Dockerfile) with KENNEL_LOCAL_ENDPOINT_URL pointing
at the `serve` container. Each request becomes a payload 2.0 function-URL event (bodies base64-encoded
unless they are text, as function URLs do) and goes to `Proxy.handle`, as `kennel_proxy.proxy.handler`'s
do, so local requests take the same code path as deployed ones. GET /ping answers 200 from the adapter
itself, for healthchecks; GET / is the page to try the model (page/), whose GET /model and /model/report
go to the serving container. Not part of the Lambda zip.

Settings: KENNEL_PROXY_HOST (127.0.0.1; the image sets 0.0.0.0, and docker-compose.yml publishes the
port on 127.0.0.1 unless KENNEL_BIND_ADDRESS says otherwise), KENNEL_PROXY_PORT (9000), and the handler's
own (defaults.py).

A client gets CLIENT_TIMEOUT_S for each read of its request line and headers and for its whole body
(408 past it), and at most MAX_CONNECTIONS connections are served at once (503 with Retry-After beyond),
so no client can hold a thread for long or make the adapter start threads without end.
"""

import base64
import contextlib
import json
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import page
from .proxy import Proxy, default_proxy

# A function URL refuses request payloads over Lambda's 6 MB invocation limit before the function runs.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
# Seconds a client has for each read of its request line and headers (an idle keep-alive connection
# closes after as long), and for its whole body: a Content-Length larger than the body, or a body sent a
# byte at a time, frees its thread by then.
CLIENT_TIMEOUT_S = 10.0
# Connections served at once, one thread each; a connection past them is answered 503 and closed.
MAX_CONNECTIONS = 64
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class LocalContext:
    """The part of the Lambda context object that the handler reads."""

    aws_request_id: str


def function_url_event(
    method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    """The payload 2.0 event a function URL sends for this request."""
    parts = urlsplit(target)
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    content_type = lowered.get("content-type", "")
    text = None
    if content_type.startswith(TEXT_TYPES):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None  # not text after all: base64, so the handler sees the bytes the client sent
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path or "/",
        "rawQueryString": parts.query,
        "headers": lowered,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": lowered.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": parts.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": bool(body) and text is None,
    }
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = text if text is not None else base64.b64encode(body).decode()
    return event


class AdapterHandler(page.AnswerHandler):
    server: "AdapterServer"
    server_version = "kennel-proxy"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/ping":
            self._send(200, {"Content-Type": "application/json"}, b'{"status": "ok"}')
        elif path in page.ROUTES:  # the page to try the model, and its model card (page/)
            self._send(*page.get(path, self.server.proxy.settings.local_endpoint_url))
        else:
            self._invoke()

    def do_POST(self) -> None:
        self._invoke()

    def do_OPTIONS(self) -> None:
        self._invoke()

    def do_PUT(self) -> None:
        self._invoke()

    def do_DELETE(self) -> None:
        self._invoke()

    def setup(self) -> None:
        self.timeout = self.server.client_timeout_s  # StreamRequestHandler sets it on the connection
        super().setup()

    def _invoke(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._refuse(411, "length_required", "send the body with a Content-Length")
        lengths = {value.strip(" \t") for value in self.headers.get_all("Content-Length") or ["0"]}
        length = lengths.pop() if len(lengths) == 1 else ""
        # RFC 9110's 1*DIGIT, in ASCII: int() alone would also read "+10", "1_0" and other scripts' digits.
        if not (length.isascii() and length.isdigit()):
            return self._refuse(400, "invalid_content_length", "send one Content-Length, in decimal digits")
        significant = length.lstrip("0")
        if len(significant) > len(str(MAX_REQUEST_BYTES)) or int(significant or "0") > MAX_REQUEST_BYTES:
            return self._refuse(
                413, "request_too_large", f"the request must be under {MAX_REQUEST_BYTES} bytes"
            )
        body = self._read_body(int(significant or "0"))
        if body is None:
            return self._refuse(
                408, "request_timeout", f"the body did not arrive within {self.timeout:g} s of its headers"
            )
        event = function_url_event(
            self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
        )
        context = LocalContext(aws_request_id=event["requestContext"]["requestId"])
        response = self.server.proxy.handle(event, context)
        payload = response.get("body") or ""
        data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode("utf-8")
        self._send(response["statusCode"], response.get("headers") or {}, data)

    def _read_body(self, length: int) -> bytes | None:
        """`length` bytes of body, or None when they do not all arrive within the client timeout."""
        deadline = time.monotonic() + self.timeout
        chunks, left = [], length
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.connection.settimeout(remaining)
            try:
                chunk = self.rfile.read1(min(left, 1 << 16))
            except TimeoutError:
                return None
            if not chunk:  # the client stopped sending and closed
                return None
            chunks.append(chunk)
            left -= len(chunk)
        self.connection.settimeout(self.timeout)
        return b"".join(chunks)

    def _refuse(self, status: int, kind: str, message: str) -> None:
        """An answer from the adapter itself, before the handler; the connection closes after it."""
        self.close_connection = True
        body = json.dumps({"error": message, "type": kind}).encode()
        with contextlib.suppress(OSError):  # a client that has gone away
            self._send(status, {"Content-Type": "application/json"}, body)

    def log_message(self, format: str, *args: Any) -> None:
        """The handler logs one JSON line per request; the access log would repeat it."""


class AdapterServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them at once, each request answered by
    `proxy`."""

    daemon_threads = True
    BUSY = b'{"error": "the proxy is serving as many connections as it can; retry", "type": "proxy_busy"}'

    def __init__(self, address: tuple[str, int], proxy: Proxy, client_timeout_s: float, max_connections: int):
        super().__init__(address, AdapterHandler)
        self.proxy = proxy
        self.client_timeout_s = client_timeout_s
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._slots.acquire(blocking=False):
            try:
                super().process_request(request, client_address)
            except BaseException:
                self._slots.release()
                raise
            return
        # Answered here, on the accepting thread, without waiting for the request: whatever has arrived
        # of it is read first, so that closing with unread bytes does not reset the answer away.
        with contextlib.suppress(OSError):
            request.recv(1 << 16, socket.MSG_DONTWAIT)
        with contextlib.suppress(OSError):
            request.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                + f"Connection: close\r\nContent-Length: {len(self.BUSY)}\r\n\r\n".encode()
                + self.BUSY
            )
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def make_server(
    host: str,
    port: int,
    proxy: Proxy,
    client_timeout_s: float = CLIENT_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
) -> AdapterServer:
    return AdapterServer((host, port), proxy, client_timeout_s, max_connections)


def main() -> None:
    host = os.environ.get("KENNEL_PROXY_HOST", "127.0.0.1")
    port = int(os.environ.get("KENNEL_PROXY_PORT", "9000"))
    proxy = default_proxy()  # a missing or malformed setting stops the adapter here, naming it
    server = make_server(host, port, proxy)
    # As PID 1 in a container, SIGTERM does nothing unless handled; end serve_forever on it.
    signal.signal(signal.SIGTERM, _exit)
    print(
        json.dumps({"listening": f"http://{host}:{port}", "endpoint": proxy.settings.endpoint_name}),
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
