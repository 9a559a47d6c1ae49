"""`python -m deploy demo`: the page on 127.0.0.1, its photos sent to the stack with the caller's own
credentials. The stack is `up` in moto; the function URL is a stand-in on 127.0.0.1 that checks each
request's SigV4 signature as AWS would, so the path is checked up to the signed call."""

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from deploy import demo, lifecycle
from deploy.aws import DeployError
from deploy.stack import ROOT

JPEG = b"\xff\xd8\xff\xe0 stand-in photo bytes \xff\xd9"
PREDICTIONS = {"predictions": [[{"label": "042.Cardigan_welsh_corgi", "index": 41, "probability": 0.9}]]}
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)


class FunctionUrlStandIn(ThreadingHTTPServer):
    """Answers like an AWS_IAM function URL: 403 unless the request carries a valid SigV4 signature for
    the `lambda` service by the one key it knows, recomputed from what arrived (method, path, query, the
    signed headers and the body)."""

    daemon_threads = True

    def __init__(self, key: str, secret: str) -> None:
        super().__init__(("127.0.0.1", 0), SignatureChecker)
        self.key, self.secret, self.seen = key, secret, []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class SignatureChecker(BaseHTTPRequestHandler):
    server: FunctionUrlStandIn
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        claim = AUTHORIZATION.fullmatch(self.headers.get("Authorization", ""))
        valid = claim is not None and self._signature(claim, body) == claim["signature"]
        self.server.seen.append({"path": self.path, "body": body, "claim": claim and claim.groupdict()})
        if not valid:
            return self._send(403, {"Content-Type": "application/json"}, b'{"Message":"Forbidden"}')
        headers = {"Content-Type": "application/json", "X-Kennel-Precision": "int8", "X-Request-Id": "fn-1"}
        self._send(200, headers, json.dumps(PREDICTIONS).encode())

    def _signature(self, claim: re.Match, body: bytes) -> str:
        if claim["key"] != self.server.key or (claim["region"], claim["service"]) != ("us-east-1", "lambda"):
            return ""
        signed = {name: self.headers[name] for name in claim["signed"].split(";")}
        url = f"http://{self.headers['Host']}{self.path}"
        request = AWSRequest(method=self.command, url=url, data=body, headers=signed)
        request.context["timestamp"] = self.headers["X-Amz-Date"]
        signer = SigV4Auth(Credentials(self.server.key, self.server.secret), "lambda", "us-east-1")
        return signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


def serving(server: ThreadingHTTPServer):
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def servers():
    started = []

    def start(server):
        started.append(serving(server))
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def function_url(servers) -> FunctionUrlStandIn:
    return servers(FunctionUrlStandIn("testing", "testing"))  # the keys tests/deploy/conftest.py sets


def through_url(servers, url: str, session=None) -> str:
    target = demo.FunctionUrl(url, session or boto3.Session(), "us-east-1")
    return servers(demo.DemoServer(0, target, None)).origin


def test_a_photo_reaches_the_function_url_signed_with_the_callers_credentials(servers, function_url):
    origin = through_url(servers, function_url.url)
    response = httpx.post(
        f"{origin}/?top_k=5", content=JPEG, headers={"Content-Type": "image/jpeg", "Origin": origin}
    )

    assert response.status_code == 200, response.text
    assert response.json() == PREDICTIONS
    assert (response.headers["x-kennel-precision"], response.headers["x-request-id"]) == ("int8", "fn-1")
    (seen,) = function_url.seen
    assert (seen["path"], seen["body"]) == ("/?top_k=5", JPEG)
    assert seen["claim"]["key"] == "testing" and "content-type" in seen["claim"]["signed"].split(";")


def test_a_request_signed_with_another_key_is_refused_and_the_refusal_reaches_the_page(servers, function_url):
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="not-the-secret")
    origin = through_url(servers, function_url.url, session)
    response = httpx.post(f"{origin}/", content=JPEG, headers={"Content-Type": "image/jpeg"})

    assert response.status_code == 403
    assert response.json() == {"Message": "Forbidden"}
    assert len(function_url.seen) == 1


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Host": "localhost"}, {"Origin": "null"}],
    ids=["another-site", "another-host-name", "opaque-origin"],
)
def test_only_the_page_itself_can_have_a_photo_signed(servers, function_url, headers):
    origin = through_url(servers, function_url.url)
    response = httpx.post(f"{origin}/", content=JPEG, headers={"Content-Type": "image/jpeg", **headers})

    assert response.status_code == 403
    assert response.json()["type"] == "foreign_origin"
    assert function_url.seen == []


def test_bodies_over_the_limit_and_chunked_ones_are_refused_before_signing(servers, function_url):
    origin = through_url(servers, function_url.url)
    large = httpx.post(f"{origin}/", content=b"x" * (demo.MAX_BODY_BYTES + 1))
    chunked = httpx.post(f"{origin}/", content=iter([JPEG]), headers={"Content-Type": "image/jpeg"})

    assert (large.status_code, large.json()["type"]) == (413, "request_too_large")
    assert (chunked.status_code, chunked.json()["type"]) == (411, "length_required")
    assert function_url.seen == []
    assert httpx.get(f"{origin}/").status_code == 200  # still serving


@pytest.fixture
def deployed(make_run, stack_doc):
    """The example stack `up` in moto, with a training report in its model directory."""
    model_dir = Path(stack_doc["model"]["dir"])
    (model_dir / "report.html").write_text("<!doctype html><title>Training report</title>")
    run = make_run()
    lifecycle.up(run)
    return run


def test_the_stacks_function_url_and_the_models_card_come_from_aws(deployed, servers, stack_doc):
    url = boto3.client("lambda").get_function_url_config(FunctionName="kennel-proxy", Qualifier="live")
    card = demo.ModelCard(deployed)
    origin = servers(demo.DemoServer(0, demo.target(deployed, direct=False), card)).origin

    assert demo.function_url(deployed) == url["FunctionUrl"]
    model = httpx.get(f"{origin}/model").json()
    manifest = json.loads((Path(stack_doc["model"]["dir"]) / "manifest.json").read_text())
    assert model == {"manifest": manifest, "precision": None, "report": "model/report"}
    report = httpx.get(f"{origin}/model/report")
    assert report.text == "<!doctype html><title>Training report</title>"
    assert "sandbox" in report.headers["content-security-policy"]


def test_a_stack_without_a_function_url_says_to_use_direct(make_run, stack_doc, write_stack):
    stack_doc["lambda"]["function_url"] = False
    run = make_run(path=write_stack(stack_doc))
    lifecycle.up(run)

    with pytest.raises(DeployError, match="--direct"):
        demo.target(run, direct=False)


def test_direct_sends_the_photo_to_invoke_endpoint(aws, make_run, servers):
    results = [
        {
            "Body": json.dumps(PREDICTIONS),
            "ContentType": "application/json",
            "CustomAttributes": "precision=fp32",
        }
    ]
    httpx.post(
        f"{aws}/moto-api/static/sagemaker/endpoint-results",
        json={"account_id": "123456789012", "region": "us-east-1", "results": results},
    ).raise_for_status()
    run = make_run()
    origin = servers(demo.DemoServer(0, demo.target(run, direct=True), None)).origin

    photo = httpx.post(
        f"{origin}/?top_k=5", content=b"stand-in photo", headers={"Content-Type": "image/jpeg"}
    )
    address = httpx.post(f"{origin}/", json={"url": "https://images.example.com/dog.jpg"})

    assert photo.status_code == 200, photo.text
    assert photo.json() == PREDICTIONS
    assert photo.headers["x-kennel-precision"] == "fp32" and photo.headers["x-request-id"]
    assert address.status_code == 415 and "without --direct" in address.json()["error"]


def test_the_command_serves_the_page_on_loopback(deployed, stack_file):
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy", "demo", "--stack", str(stack_file), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        origin = re.search(r"open (http://127\.0\.0\.1:\d+)/", line)
        assert origin, line + process.stderr.read()
        page = httpx.get(origin[1] + "/", timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert page.status_code == 200 and "<title>Kennel: try the model</title>" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert "function URL of kennel-proxy" in line
