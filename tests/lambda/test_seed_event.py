"""The seed project's Lambda test event, unchanged, through the handler configured as `up` configures it.

The function's environment is built from a stack file by deploy.function.environment, the very
function `up` writes into the Lambda's configuration; the handler reads it with Settings.from_env, as
at a cold start. The URL's host, s3.amazonaws.com on port 443, is served by a real HTTPS server on a
loopback address with a certificate for that name, reached through the guard's own hooks (the
resolver and the address rule, as in test_safe_fetch.py). Binding port 443 needs root, which the
test machines are.
"""

import datetime
import errno
import http.server
import ipaddress
import json
import random
import ssl
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deploy import function
from deploy.stack import Stack, parse
from kennel_proxy.proxy import Proxy
from kennel_proxy.safe_fetch import UrlFetcher
from kennel_proxy.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "stack.example.toml"
SEED_HOST = "s3.amazonaws.com"
SEED_PATH = "/cdn-origin-etr.akc.org/wp-content/uploads/2017/11/20113314/Carolina-Dog-standing-outdoors.jpg"
# The seed's test event (seed-anchors.md, section 4), byte for byte.
SEED_EVENT = {"url": f"https://{SEED_HOST}{SEED_PATH}"}
# moto decodes request bodies as UTF-8, so the image sent on to it must decode (see test_handler.py).
IMAGE = b"ascii stand-in for the Carolina dog JPEG"
# What the seed's endpoint answers: one row of 133 logits.
LOGITS = [[round(0.01 * i - 0.5, 2) for i in range(133)]]


@dataclass
class SeedHost:
    address: str
    context: ssl.SSLContext
    requests: list[tuple[str, str]]


def certificate_for(name: str, folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.fixture
def seed_host(tmp_path: Path) -> Iterator[SeedHost]:
    """HTTPS for s3.amazonaws.com on port 443 of a random 127/8 address (other runs may hold another)."""
    cert_file, key_file = certificate_for(SEED_HOST, tmp_path)
    requests: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as S3 answers

        def do_GET(self) -> None:
            requests.append((self.path, self.headers["Host"]))
            found = self.path == SEED_PATH
            body = IMAGE if found else b"not found"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "image/jpeg" if found else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    for _ in range(20):
        address = str(ipaddress.IPv4Address("127.0.0.0") + random.randrange(2, 1 << 24))
        try:
            server = http.server.ThreadingHTTPServer((address, 443), Handler)
            break
        except PermissionError:
            pytest.skip("binding port 443 needs root (CI and the test machines run as root)")
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
    server.daemon_threads = True
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield SeedHost(address, ssl.create_default_context(cafile=str(cert_file)), requests)
    server.shutdown()
    server.server_close()


def stack_with(tmp_path: Path, **lambda_keys: object) -> Stack:
    with EXAMPLE.open("rb") as fh:
        doc = tomllib.load(fh)
    doc["lambda"].update(lambda_keys)
    return parse(doc, tmp_path)


def deployed_as(stack: Stack, host: SeedHost) -> Proxy:
    """The proxy that a cold start with `up`'s environment builds, but for the guard's hooks: the seed
    host resolves to the test server, and loopback counts as public."""
    settings = Settings.from_env(function.environment(stack))

    def resolve(name: str, port: int) -> list[str]:
        assert (name, port) == (SEED_HOST, 443)
        return [host.address]

    fetcher = UrlFetcher(
        settings.fetch_policy(),
        address_allowed=lambda address: address.is_loopback,
        resolve=resolve,
        ssl_context=host.context,
    )
    return Proxy.from_settings(settings, fetcher=fetcher)


def test_the_seed_event_returns_a_prediction_when_its_host_is_allowed(moto, seed_host, context, tmp_path):
    proxy = deployed_as(stack_with(tmp_path, allowed_url_hosts=[SEED_HOST]), seed_host)
    moto.queue_results(LOGITS)

    response = proxy.handle(SEED_EVENT, context)

    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"]) == LOGITS
    assert seed_host.requests == [(SEED_PATH, SEED_HOST)]


@pytest.mark.parametrize("allowed", [None, ["images.example.com"]])
def test_without_the_host_the_answer_names_the_stack_key(moto, seed_host, context, tmp_path, allowed):
    keys = {} if allowed is None else {"allowed_url_hosts": allowed}
    proxy = deployed_as(stack_with(tmp_path, **keys), seed_host)

    response = proxy.handle(SEED_EVENT, context)

    body = json.loads(response["body"])
    assert (response["statusCode"], body["type"]) == (400, "url_not_allowed")
    assert "lambda.allowed_url_hosts" in body["error"]
    assert seed_host.requests == []
