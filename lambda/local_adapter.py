"""Serves the Lambda handler over plain HTTP, the way a function URL would, for the local stack.

    export SAGEMAKER_ENDPOINT_NAME=local KENNEL_LOCAL_ENDPOINT_URL=http://127.0.0.1:8080
    python lambda/local_adapter.py
    curl -X POST --data-binary @dog.jpg -H 'Content-Type: image/jpeg' 'http://127.0.0.1:9000/?top_k=3'

In docker compose it runs as the `proxy` service (lambda/Dockerfile) with KENNEL_LOCAL_ENDPOINT_URL pointing
at the `serve` container. Each request becomes a payload 2.0 function-URL event (bodies base64-encoded
unless they are text, as function URLs do) and goes to `proxy.handler`, so local requests take the same
code path as deployed ones. GET /ping answers 200 from the adapter itself, for healthchecks; GET / is the
page to try the model (lambda/page/), whose GET /model and /model/report go to the serving container. Not
part of the Lambda zip.

Settings: KENNEL_PROXY_HOST (127.0.0.1; the image sets 0.0.0.0), KENNEL_PROXY_PORT (9000), and the
handler's own (defaults.py).
"""

import base64
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import page
import proxy

# A function URL refuses request payloads over Lambda's 6 MB invocation limit before the function runs.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
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


class AdapterHandler(BaseHTTPRequestHandler):
    server_version = "kennel-proxy"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/ping":
            self._send(200, {"Content-Type": "application/json"}, b'{"status": "ok"}')
        elif path in page.ROUTES:  # the page to try the model, and its model card (lambda/page/)
            self._send(*page.get(path, proxy.SETTINGS.local_endpoint_url))
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

    def _invoke(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            error = {"error": "send the body with a Content-Length", "type": "length_required"}
            self.close_connection = True
            self._send(411, {"Content-Type": "application/json"}, json.dumps(error).encode())
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_REQUEST_BYTES:
            error = {
                "error": f"the request must be under {MAX_REQUEST_BYTES} bytes",
                "type": "request_too_large",
            }
            self.close_connection = True
            self._send(413, {"Content-Type": "application/json"}, json.dumps(error).encode())
            return
        body = self.rfile.read(length) if length else b""
        event = function_url_event(
            self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
        )
        response = proxy.handler(event, LocalContext(aws_request_id=event["requestContext"]["requestId"]))
        payload = response.get("body") or ""
        data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode("utf-8")
        self._send(response["statusCode"], response.get("headers") or {}, data)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """The handler logs one JSON line per request; the access log would repeat it."""


def make_server(host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), AdapterHandler)
    server.daemon_threads = True
    return server


def main() -> None:
    host = os.environ.get("KENNEL_PROXY_HOST", "127.0.0.1")
    port = int(os.environ.get("KENNEL_PROXY_PORT", "9000"))
    server = make_server(host, port)
    # As PID 1 in a container, SIGTERM does nothing unless handled; end serve_forever on it.
    signal.signal(signal.SIGTERM, _exit)
    print(
        json.dumps({"listening": f"http://{host}:{port}", "endpoint": proxy.SETTINGS.endpoint_name}),
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
