"""The page to try the model: index.html beside this file, one self-contained document (its style and
script inline, no font, image or script from anywhere else), so it works on an air-gapped laptop.

local_adapter.py serves it at GET / of the local proxy, and forwards GET /model and GET /model/report (the
manifest and the training report) to the serving container; `python -m deploy demo` serves the same file.
Both write their answers with `AnswerHandler`. Not part of the Lambda zip: deploy/function.py zips only the
top-level modules of kennel_proxy/.

The Content-Security-Policy says what the page may do: run exactly its own inline <script> and <style>,
allowed by their sha256 hashes (computed here from the file as served, so an edit can never leave a stale
hash), show photos the user chose (blob:) and talk to its own origin. Nothing else loads or connects.
"""

import base64
import hashlib
import http.client
import json
import re
from functools import cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

HTML = Path(__file__).with_name("index.html")
FORWARDED = ("/model", "/model/report")  # to the serving container, GET only (kennel_serve/card.py)
ROUTES = ("/", *FORWARDED)
JSON = {"Content-Type": "application/json"}

Answer = tuple[int, dict[str, str], bytes]


def _hashes(html: str, tag: str) -> list[str]:
    """CSP source expressions for the contents of each inline <tag> element, as the browser hashes them."""
    bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    return [f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in bodies]


def content_security_policy(html: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(_hashes(html, 'script'))}",
            f"style-src {' '.join(_hashes(html, 'style'))}",
            "img-src blob:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


@cache
def page() -> Answer:
    """GET /: the page, with its policy; read once."""
    html = HTML.read_text(encoding="utf-8")
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": content_security_policy(html),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    return 200, headers, html.encode("utf-8")


def error(status: int, type_: str, message: str) -> Answer:
    return status, dict(JSON), json.dumps({"error": message, "type": type_}).encode()


def forward(endpoint_url: str | None, path: str, timeout_s: float = 5.0) -> Answer:
    """GET `path` from the serving container at `endpoint_url`, its status, type and body as they are."""
    if not endpoint_url:
        return error(404, "not_found", "the model's card is served only in local mode")
    parts = urlsplit(endpoint_url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "", parts.port, timeout=timeout_s)
    try:
        connection.request("GET", parts.path.rstrip("/") + path)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException):
        return error(502, "endpoint_unreachable", "the model server could not be reached")
    finally:
        connection.close()
    headers = {
        name: value
        for name in ("Content-Type", "Content-Security-Policy")
        if (value := response.getheader(name)) is not None
    }
    return response.status, headers, body


def get(path: str, endpoint_url: str | None) -> Answer:
    """The answer to GET `path`, one of ROUTES."""
    return page() if path == "/" else forward(endpoint_url, path)


class AnswerHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 requests, each answered with one `Answer`: the local adapter's and `deploy demo`'s."""

    protocol_version = "HTTP/1.1"

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
