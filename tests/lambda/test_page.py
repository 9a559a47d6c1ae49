"""The page to try the model, as the local adapter serves it: one self-contained document whose policy
allows exactly its own inline script and style; the model card forwarded to the serving container; and
the precision and request id that every prediction carries, locally and through AWS's InvokeEndpoint."""

import base64
import hashlib
import json
import re
import threading
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

from kennel_proxy import local_adapter, page
from kennel_proxy.proxy import Proxy
from kennel_proxy.settings import Settings

from .conftest import REGION

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 real bytes \xff\xd9"
PREDICTIONS = {"predictions": [[{"label": "042.Cardigan_welsh_corgi", "index": 41, "probability": 0.9}]]}
MANIFEST = {"format": "kennel-model", "labels": ["001.a", "002.b"], "architecture": {"backbone": "resnet50"}}
REPORT = b"<!doctype html><title>report</title>"


def serving_container(request):
    """A stand-in for the serving container: /invocations names the INT8 model in its custom attributes."""
    if request.path == "/model":
        card = {"manifest": MANIFEST, "precision": "int8", "report": "model/report"}
        return 200, {"Content-Type": "application/json"}, json.dumps(card).encode()
    if request.path == "/model/report":
        return 200, {"Content-Type": "text/html", "Content-Security-Policy": "sandbox"}, REPORT
    headers = {
        "Content-Type": "application/json",
        "X-Kennel-Precision": "int8",
        "X-Amzn-SageMaker-Custom-Attributes": "precision=int8",
    }
    return 200, headers, json.dumps(PREDICTIONS).encode()


@pytest.fixture
def serve(http_server):
    return http_server(serving_container)


def start_adapter(endpoint_url: str):
    settings = Settings.from_env({"SAGEMAKER_ENDPOINT_NAME": "local"}, local_endpoint_url=endpoint_url)
    server = local_adapter.make_server("127.0.0.1", 0, Proxy.from_settings(settings))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def adapter(serve):
    server, url = start_adapter(serve.url)
    yield url
    server.shutdown()
    server.server_close()


class References(HTMLParser):
    """Every URL the document names in an attribute, and the text of its inline scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        self.urls += [value or "" for name, value in attrs if name in {"src", "href", "action", "srcset"}]
        self._open = tag if tag in self.inline else None
        if self._open:
            self.inline[tag].append("")

    def handle_endtag(self, tag):
        self._open = None

    def handle_data(self, data):
        if self._open:
            self.inline[self._open][-1] += data


def sha256_source(text: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


def test_the_page_is_self_contained_and_its_policy_allows_exactly_its_own_script_and_style(adapter):
    response = httpx.get(f"{adapter}/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = dict(d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";"))
    references = References()
    references.feed(response.text)
    (script,), (style,) = references.inline["script"], references.inline["style"]
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == sha256_source(script)
    assert policy["style-src"] == sha256_source(style)
    assert policy["connect-src"] == "'self'" and policy["img-src"] == "blob:"
    assert "unsafe" not in response.headers["content-security-policy"]
    # Nothing the page names lies on another origin: no scheme, no host, only paths of its own.
    for url in references.urls:
        assert not urlsplit(url).scheme and not urlsplit(url).netloc, url
    assert not re.search(r"@import|url\(", style)
    assert not re.search(r"<script[^>]*\bsrc=|<link\b", response.text)


def test_the_model_card_and_the_report_come_from_the_serving_container(adapter, serve):
    card = httpx.get(f"{adapter}/model", timeout=10)
    report = httpx.get(f"{adapter}/model/report", timeout=10)

    assert card.status_code == 200 and card.json()["manifest"] == MANIFEST
    assert report.status_code == 200 and report.content == REPORT
    assert report.headers["content-security-policy"] == "sandbox"
    assert [(r.method, r.path) for r in serve.requests] == [("GET", "/model"), ("GET", "/model/report")]


def test_an_unreachable_serving_container_is_a_json_502_for_the_card():
    server, url = start_adapter("http://127.0.0.1:9")  # the discard port: nothing listens
    try:
        response = httpx.get(f"{url}/model", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 502
    assert response.json()["type"] == "endpoint_unreachable"


def test_predictions_carry_the_precision_and_the_request_id(adapter):
    response = httpx.post(f"{adapter}/?top_k=5", content=JPEG, headers={"Content-Type": "image/jpeg"})
    refused = httpx.post(f"{adapter}/", content=b"text", headers={"Content-Type": "text/plain"})

    assert response.status_code == 200 and response.json() == PREDICTIONS
    assert response.headers["x-kennel-precision"] == "int8"
    assert re.fullmatch(r"[0-9a-f-]{36}", response.headers["x-request-id"])
    assert refused.status_code == 415
    assert refused.headers["x-request-id"] == refused.json()["request_id"]
    assert "x-kennel-precision" not in refused.headers


def test_the_precision_comes_through_invoke_endpoint_from_the_custom_attributes(moto, context):
    """On AWS, InvokeEndpoint hands back only the container's custom attributes, not its own headers."""
    results = [
        {"Body": json.dumps(PREDICTIONS), "ContentType": "application/json", "CustomAttributes": attributes}
        for attributes in ("precision=fp32", "top_k=5, precision=int8", "precision=int8 and more", "")
    ]
    httpx.post(
        f"{moto.url}/moto-api/static/sagemaker/endpoint-results",
        json={"account_id": "123456789012", "region": REGION, "results": results},
    ).raise_for_status()
    proxy, precisions = moto.proxy(), []
    for n in range(len(results)):  # moto answers the same body with the same result: a new body each time
        event = {
            "version": "2.0",
            "requestContext": {"http": {"method": "POST"}},
            "headers": {"content-type": "image/jpeg"},
            "body": f"stand-in bytes {n}",
        }
        reply = proxy.handle(event, context)
        assert reply["statusCode"] == 200, reply["body"]
        assert reply["headers"]["X-Request-Id"] == context.aws_request_id
        precisions.append(reply["headers"].get("X-Kennel-Precision"))
    assert precisions == ["fp32", "int8", None, None]


def test_the_page_routes_are_get_only_and_leave_the_proxy_contract_alone(adapter):
    assert httpx.get(f"{adapter}/predict", timeout=10).status_code == 405
    response = httpx.post(f"{adapter}/model", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200 and response.json() == PREDICTIONS  # POST anywhere still classifies
    assert page.ROUTES == ("/", "/model", "/model/report")
