"""Fixtures for the Lambda proxy tests: moto as a real server, small real HTTP(S) servers on 127.0.0.1 with
a certificate made here, and realistic events of every kind. Nothing here talks to any other address.

    .venv/bin/python -m pytest tests/lambda
"""

import contextlib
import copy
import datetime
import http.server
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.stub import Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto.server import ThreadedMotoServer

from kennel_proxy.proxy import Proxy
from kennel_proxy.settings import Settings
from tests.conftest import free_port

REGION = "us-east-1"
ENDPOINT = "kennel-test-endpoint"
TEST_HOST_NAME = "images.kennel.test"


def settings(**overrides: Any) -> Settings:
    """The proxy's settings for ENDPOINT: the defaults, with `overrides` replacing fields."""
    return Settings.from_env({"SAGEMAKER_ENDPOINT_NAME": ENDPOINT}, **overrides)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto over HTTP on a free loopback port, for the whole session; tests reset it before use."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    httpx.get(f"{url}/moto-api/", timeout=10).raise_for_status()
    yield url
    server.stop()


@dataclass
class Moto:
    url: str

    def proxy(self, runtime: Any = None, fetcher: Any = None, **overrides: Any) -> Proxy:
        """A proxy whose sagemaker-runtime client (unless `runtime` is given) follows AWS_ENDPOINT_URL
        here; `overrides` replace fields of its settings."""
        return Proxy.from_settings(settings(**overrides), runtime, fetcher)

    def queue_results(self, *bodies: Any) -> None:
        """Queues InvokeEndpoint answers, each a JSON document, in order."""
        results = [
            {
                "Body": json.dumps(body),
                "ContentType": "application/json",
                "InvokedProductionVariant": "AllTraffic",
                "CustomAttributes": "",
            }
            for body in bodies
        ]
        response = httpx.post(
            f"{self.url}/moto-api/static/sagemaker/endpoint-results",
            json={"account_id": "123456789012", "region": REGION, "results": results},
        )
        response.raise_for_status()


@pytest.fixture
def moto(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Moto:
    """A reset moto, and an environment whose sagemaker-runtime clients follow AWS_ENDPOINT_URL to it."""
    httpx.post(f"{moto_server}/moto-api/reset").raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    return Moto(moto_server)


@pytest.fixture
def no_endpoint() -> Stubber:
    """A sagemaker-runtime client with nothing stubbed: any InvokeEndpoint call fails the request, so a 4xx
    proves none was made."""
    client = boto3.client(
        "sagemaker-runtime", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"
    )
    stubber = Stubber(client)
    stubber.activate()
    return stubber


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A context that trusts only this certificate, with hostname checks on."""
        return ssl.create_default_context(cafile=str(self.cert_file))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, localhost and images.kennel.test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kennel test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                    x509.DNSName(TEST_HOST_NAME),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Certificate(cert_file, key_file)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class TestServer:
    """A real HTTP(S) server on 127.0.0.1 whose answers come from a function of the request."""

    url: str
    port: int
    requests: list[Recorded]
    release: threading.Event


# A route returns (status, headers, body) or (status, headers, body, delay_s).
Route = Callable[[Recorded], tuple]


@pytest.fixture
def http_server(certificate: Certificate) -> Iterator[Callable[..., TestServer]]:
    """Starts servers with `http_server(route, tls=False)`; all stop when the test ends. A delayed answer
    waits on `release`, which teardown sets, so a deliberately slow server never holds up the suite."""
    started: list[tuple[http.server.ThreadingHTTPServer, threading.Event]] = []

    def start(route: Route, tls: bool = False) -> TestServer:
        requests: list[Recorded] = []
        release = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorded = Recorded(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                requests.append(recorded)
                status, headers, body, *delay = route(recorded)
                if delay and release.wait(delay[0]):
                    return
                self.send_response(status)
                # A header given as None is left out (a chunked answer has no Content-Length).
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    if value is not None:
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if tls:
            server.socket = certificate.server_context().wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append((server, release))
        port = server.server_address[1]
        scheme = "https" if tls else "http"
        return TestServer(f"{scheme}://127.0.0.1:{port}", port, requests, release)

    yield start
    for server, release in started:
        release.set()
        server.shutdown()
        server.server_close()


@dataclass
class DrippingServer:
    url: str
    port: int


@pytest.fixture
def dripping_server(certificate: Certificate) -> Iterator[Callable[..., DrippingServer]]:
    """Starts TLS servers with `dripping_server(prompt, drip, interval_s)`: each reads a request's head,
    sends `prompt` at once, then `drip` one byte every `interval_s`, as a server that keeps a client waiting
    without ever letting one socket read time out. Teardown stops every drip at once."""
    stop = threading.Event()
    listeners: list[socket.socket] = []

    def start(prompt: bytes, drip: bytes, interval_s: float = 0.4) -> DrippingServer:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        context = certificate.server_context()

        def answer(raw: socket.socket) -> None:
            with contextlib.suppress(OSError), context.wrap_socket(raw, server_side=True) as tls:
                head = b""
                while b"\r\n\r\n" not in head:
                    received = tls.recv(4096)
                    if not received:
                        return
                    head += received
                tls.sendall(prompt)
                for byte in drip:
                    if stop.wait(interval_s):
                        return
                    tls.sendall(bytes([byte]))

        def accept() -> None:
            with contextlib.suppress(OSError):
                while True:
                    raw, _ = listener.accept()
                    threading.Thread(target=answer, args=(raw,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        port = listener.getsockname()[1]
        return DrippingServer(f"https://127.0.0.1:{port}", port)

    yield start
    stop.set()
    for listener in listeners:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        listener.close()


@pytest.fixture
def dripping_relay() -> Iterator[Callable[[int, float], int]]:
    """Starts relays with `dripping_relay(port, interval_s)`: each passes a connection on to 127.0.0.1:port,
    the client's bytes at once and the server's one byte every `interval_s`, so that a TLS handshake with a
    real server crawls. Returns the relay's port; teardown stops every relay."""
    stop = threading.Event()
    listeners: list[socket.socket] = []

    def start(port: int, interval_s: float) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def pump(source: socket.socket, sink: socket.socket, interval: float) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(4096):
                    if not interval:
                        sink.sendall(data)
                        continue
                    for byte in data:
                        if stop.wait(interval):
                            return
                        sink.sendall(bytes([byte]))

        def accept() -> None:
            with contextlib.suppress(OSError):
                while True:
                    client, _ = listener.accept()
                    server = socket.create_connection(("127.0.0.1", port))
                    threading.Thread(target=pump, args=(client, server, 0), daemon=True).start()
                    threading.Thread(target=pump, args=(server, client, interval_s), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return listener.getsockname()[1]

    yield start
    stop.set()
    for listener in listeners:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()


class LambdaContext:
    """What the Lambda runtime passes: all of it must stay out of responses."""

    aws_request_id = "5f0b8e3c-6f1e-4c1a-9d0e-2b7c1a9e4f10"
    function_name = "kennel-proxy-secret-fn"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:999988887777:function:kennel-proxy-secret-fn"
    memory_limit_in_mb = 512
    log_group_name = "/aws/lambda/kennel-proxy-secret-fn"
    log_stream_name = "2025/01/01/[$LATEST]abcdef0123456789"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


@pytest.fixture
def context() -> LambdaContext:
    return LambdaContext()


REST_V1_EVENT: dict[str, Any] = {
    "resource": "/predict",
    "path": "/predict",
    "httpMethod": "POST",
    "headers": {
        "Accept": "*/*",
        "Content-Type": "image/jpeg",
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "curl/8.5.0",
        "X-Forwarded-For": "203.0.113.7",
    },
    "multiValueHeaders": {"Content-Type": ["image/jpeg"]},
    "queryStringParameters": None,
    "multiValueQueryStringParameters": None,
    "pathParameters": None,
    "stageVariables": None,
    "requestContext": {
        "accountId": "999988887777",
        "apiId": "abc123",
        "httpMethod": "POST",
        "path": "/prod/predict",
        "protocol": "HTTP/1.1",
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "resourcePath": "/predict",
        "stage": "prod",
        "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
    },
    "body": None,
    "isBase64Encoded": True,
}

FUNCTION_URL_EVENT: dict[str, Any] = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/",
    "rawQueryString": "",
    "headers": {
        "content-type": "image/png",
        "host": "abcdefg.lambda-url.us-east-1.on.aws",
        "user-agent": "python-httpx/0.28.1",
        "x-amzn-trace-id": "Root=1-5e6722a7-cc56xmpl46db7ae02d4da47e",
    },
    "requestContext": {
        "accountId": "anonymous",
        "apiId": "abcdefg",
        "domainName": "abcdefg.lambda-url.us-east-1.on.aws",
        "domainPrefix": "abcdefg",
        "http": {
            "method": "POST",
            "path": "/",
            "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.7",
            "userAgent": "python-httpx/0.28.1",
        },
        "requestId": "2f4e6d11-1f5c-4b6f-9d6e-9b7a0c3e2a11",
        "routeKey": "$default",
        "stage": "$default",
        "time": "01/Jan/2025:12:00:00 +0000",
        "timeEpoch": 1735732800000,
    },
    "body": None,
    "isBase64Encoded": True,
}


class Events:
    """Realistic events with a chosen body; `changes` replace top-level keys."""

    @staticmethod
    def rest(body: str | None, content_type: str, base64_encoded: bool, **changes: Any) -> dict[str, Any]:
        event = copy.deepcopy(REST_V1_EVENT)
        event["headers"]["Content-Type"] = content_type
        event["multiValueHeaders"]["Content-Type"] = [content_type]
        event.update(body=body, isBase64Encoded=base64_encoded, **changes)
        return event

    @staticmethod
    def function_url(
        body: str | None, content_type: str, base64_encoded: bool, **changes: Any
    ) -> dict[str, Any]:
        event = copy.deepcopy(FUNCTION_URL_EVENT)
        event["headers"]["content-type"] = content_type
        event.update(body=body, isBase64Encoded=base64_encoded, **changes)
        return event


@pytest.fixture
def events() -> type[Events]:
    return Events
