"""Local mode: the HTTP adapter in front of the handler, InvokeEndpoint sent to a stand-in /invocations."""

import base64
import contextlib
import http.client
import json
import socket
import threading
import time

import boto3
import httpx
import pytest
from botocore.stub import Stubber

from kennel_proxy import local_adapter
from kennel_proxy.endpoint import runtime_client
from kennel_proxy.errors import RETRY_AFTER_S
from kennel_proxy.events import parse_event
from kennel_proxy.local_runtime import LocalRuntime
from kennel_proxy.proxy import Proxy
from kennel_proxy.settings import Settings

from .conftest import REGION, settings

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 real bytes \xff\xd9"
PREDICTIONS = {"predictions": [{"label": "Labrador_retriever", "probability": 0.91}]}
MODEL_ERROR = {"error": "cannot decode the image", "type": "bad_image", "request_id": "serve-1"}


def invocations(request):
    if request.body == b"undecodable":
        return 400, {"Content-Type": "application/json"}, json.dumps(MODEL_ERROR).encode()
    if request.body == b"slow":
        return 200, {"Content-Type": "application/json"}, b"{}", 30
    return 200, {"Content-Type": "application/json"}, json.dumps(PREDICTIONS).encode()


@pytest.fixture
def serve(http_server):
    return http_server(invocations)


@pytest.fixture
def start_adapter(serve):
    """Starts the adapter on a free loopback port with `start_adapter(runtime=None,
    **make_server_options)`, its proxy sending InvokeEndpoint to the stand-in, or to `runtime`; returns
    its URL."""
    local = Settings.from_env(
        {"SAGEMAKER_ENDPOINT_NAME": "local"}, local_endpoint_url=serve.url, invoke_read_timeout_s=0.5
    )
    servers = []

    def start(runtime: LocalRuntime | None = None, **options) -> str:
        server = local_adapter.make_server("127.0.0.1", 0, Proxy.from_settings(local, runtime), **options)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def adapter(start_adapter):
    return start_adapter()


def test_local_mode_is_chosen_by_the_setting():
    local = Settings.from_env(
        {"SAGEMAKER_ENDPOINT_NAME": "local", "KENNEL_LOCAL_ENDPOINT_URL": "http://serve:8080"}
    )

    assert isinstance(runtime_client(local), LocalRuntime)


def test_an_image_goes_to_invocations_with_sagemakers_headers(adapter, serve):
    response = httpx.post(
        f"{adapter}/?top_k=3", content=JPEG, headers={"Content-Type": "image/jpeg"}, timeout=10
    )

    assert response.status_code == 200
    assert response.json() == PREDICTIONS
    (call,) = serve.requests
    assert (call.method, call.path, call.body) == ("POST", "/invocations", JPEG)
    assert call.headers["content-type"] == "image/jpeg"
    assert call.headers["accept"] == "application/json"
    assert call.headers["x-amzn-sagemaker-custom-attributes"] == "top_k=3"


def test_a_json_body_travels_as_text_and_arrives_as_image_bytes(adapter, serve):
    response = httpx.post(adapter, json={"image": base64.b64encode(JPEG).decode()}, timeout=10)

    assert response.status_code == 200
    assert serve.requests[0].body == JPEG
    assert serve.requests[0].headers["content-type"] == "application/x-image"


def test_a_container_error_maps_exactly_as_a_sagemaker_model_error(adapter, context):
    through_adapter = httpx.post(
        adapter, content=b"undecodable", headers={"Content-Type": "image/jpeg"}, timeout=10
    )

    client = boto3.client(
        "sagemaker-runtime", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"
    )
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "invoke_endpoint",
            "ModelError",
            "Received client error (400) from primary",
            424,
            modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": json.dumps(MODEL_ERROR)},
        )
        through_sagemaker = Proxy.from_settings(settings(), client).handle(
            {"image": "dW5kZWNvZGFibGU="}, context
        )
        stubber.assert_no_pending_responses()

    assert through_adapter.status_code == through_sagemaker["statusCode"] == 400
    local_body = through_adapter.json()
    aws_body = json.loads(through_sagemaker["body"])
    assert {k: v for k, v in local_body.items() if k != "request_id"} == {
        k: v for k, v in aws_body.items() if k != "request_id"
    }
    assert local_body["model_status"] == 400
    assert local_body["model_error"] == MODEL_ERROR


def test_a_slow_container_is_504(adapter):
    response = httpx.post(adapter, content=b"slow", headers={"Content-Type": "image/jpeg"}, timeout=10)

    assert response.status_code == 504
    assert response.json()["type"] == "endpoint_timeout"


def test_a_stopped_container_is_502(start_adapter):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nothing_listens = probe.getsockname()[1]
    adapter = start_adapter(LocalRuntime(f"http://127.0.0.1:{nothing_listens}", 0.5, 0.5))

    response = httpx.post(adapter, content=JPEG, headers={"Content-Type": "image/jpeg"}, timeout=10)

    assert response.status_code == 502
    assert response.json()["type"] == "endpoint_unreachable"
    assert response.headers["Retry-After"] == RETRY_AFTER_S


def test_bad_requests_get_their_4xx_without_reaching_the_container(adapter, serve):
    wrong_type = httpx.post(adapter, content=b"a=b", headers={"Content-Type": "text/plain"}, timeout=10)
    wrong_method = httpx.get(f"{adapter}/predict", timeout=10)
    too_big = httpx.post(
        adapter,
        content=bytes(local_adapter.MAX_REQUEST_BYTES + 1),
        headers={"Content-Type": "image/jpeg"},
        timeout=10,
    )

    assert (wrong_type.status_code, wrong_type.json()["type"]) == (415, "unsupported_media_type")
    assert wrong_method.status_code == 405
    assert too_big.status_code == 413
    assert serve.requests == []


def test_ping_answers_for_the_healthcheck(adapter, serve):
    response = httpx.get(f"{adapter}/ping", timeout=10)

    assert response.status_code == 200
    assert serve.requests == []


def test_function_url_event_shape():
    event = local_adapter.function_url_event(
        "POST", "/?top_k=2&top_k=3", {"Content-Type": "image/png", "X-A": "1"}, b"\x89PNG", "127.0.0.1"
    )

    assert event["version"] == "2.0"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["headers"] == {"content-type": "image/png", "x-a": "1"}
    assert event["queryStringParameters"] == {"top_k": "2,3"}
    assert event["isBase64Encoded"] is True
    assert event["body"] == "iVBORw=="
    assert parse_event(event).kind == "http-v2"


def test_a_json_body_that_is_not_utf8_reaches_the_handler_as_sent(adapter):
    response = httpx.post(
        adapter, content=b'{"image": "\xff\xfe"}', headers={"Content-Type": "application/json"}, timeout=10
    )

    assert response.status_code == 400
    assert response.json()["type"] == "invalid_json"
    assert "UTF-8" in response.json()["error"]


def test_a_chunked_body_is_refused_with_411(adapter):
    response = httpx.post(
        adapter, content=iter([b'{"image": ', b'"aGk="}']), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 411
    assert response.json()["type"] == "length_required"


class Dropper:
    """A server that reads each request and drops its connection without an answer, the first `drops`
    times, then answers 200 with a JSON body; it counts the connections it took."""

    ANSWER = b'{"predictions": []}'

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.listener.accept()
                self.connections += 1
                with connection:
                    connection.recv(65536)
                    if self.connections > self.drops:
                        connection.sendall(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            + f"Content-Length: {len(self.ANSWER)}\r\n\r\n".encode()
                            + self.ANSWER
                        )


def test_a_connection_dropped_after_the_request_is_502_connection_lost_after_every_attempt(start_adapter):
    """A container killed while it works: the request was sent, no answer came, on each of the attempts
    botocore would make on AWS, and the client is told so."""
    dropper = Dropper(drops=3)
    adapter = start_adapter(LocalRuntime(dropper.url, 0.5, 5, max_attempts=3))

    response = httpx.post(adapter, content=JPEG, headers={"Content-Type": "image/jpeg"}, timeout=15)
    dropper.listener.close()

    assert response.status_code == 502
    assert response.json()["type"] == "endpoint_connection_lost"
    assert response.headers["Retry-After"] == RETRY_AFTER_S
    assert dropper.connections == 3


def test_a_connection_dropped_once_is_tried_again_as_botocore_does(start_adapter):
    """A server shutting down closes connections it has not read yet; the next attempt gets the answer."""
    dropper = Dropper(drops=1)
    adapter = start_adapter(LocalRuntime(dropper.url, 0.5, 5, max_attempts=3))

    response = httpx.post(adapter, content=JPEG, headers={"Content-Type": "image/jpeg"}, timeout=15)
    dropper.listener.close()

    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": []}
    assert dropper.connections == 2


def exchange(url: str, request: bytes) -> tuple[int, dict]:
    """Sends `request` as raw bytes and reads the answer; the socket timeout keeps a server that never
    answers from hanging the test."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, json.loads(answer.read())


HEAD = b"POST / HTTP/1.1\r\nHost: local\r\nContent-Type: image/jpeg\r\n"


@pytest.mark.parametrize(
    "lengths",
    [
        [b"+10"],
        [b"1_0"],
        [b"0x10"],
        [b"-1"],
        [b"10.0"],
        ["\u0661\u0660".encode()],
        [b"1 0"],
        [b""],
        [b"10", b"11"],
    ],
)
def test_a_content_length_that_is_not_one_number_in_digits_is_400(adapter, serve, lengths):
    request = HEAD + b"".join(b"Content-Length: %s\r\n" % value for value in lengths) + b"\r\n" + JPEG[:10]

    status, body = exchange(adapter, request)

    assert (status, body["type"]) == (400, "invalid_content_length")
    assert serve.requests == []


def test_a_body_shorter_than_its_content_length_is_408_not_a_hung_thread(start_adapter, serve):
    adapter = start_adapter(client_timeout_s=0.5)

    status, body = exchange(adapter, HEAD + b"Content-Length: 100\r\n\r\n" + JPEG[:10])

    assert (status, body["type"]) == (408, "request_timeout")
    assert serve.requests == []


def test_a_body_sent_a_byte_at_a_time_is_cut_off_at_the_client_timeout(start_adapter, serve):
    """Each byte comes well within the timeout; the whole body does not, and that is what counts."""
    adapter = start_adapter(client_timeout_s=1.0)
    head = HEAD + b"Content-Length: 40\r\n\r\n"
    port = int(adapter.rsplit(":", 1)[1])

    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head)
        with contextlib.suppress(OSError):
            for _ in range(40):
                sock.sendall(b"x")
                time.sleep(0.1)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        assert (answer.status, json.loads(answer.read())["type"]) == (408, "request_timeout")
    assert serve.requests == []


def test_connections_past_the_bound_get_503_and_the_slots_come_back(start_adapter):
    adapter = start_adapter(max_connections=2)
    port = int(adapter.rsplit(":", 1)[1])
    holders = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(2)]
    for holder in holders:
        holder.sendall(b"GET /ping HTTP/1.1\r\n")  # and nothing more: each holds a thread
    try:
        refused = httpx.get(f"{adapter}/ping", timeout=10)
    finally:
        for holder in holders:
            holder.close()
    # The holders' threads end when their connections close; poll until one slot is free again.
    for _ in range(100):
        again = httpx.get(f"{adapter}/ping", timeout=10)
        if again.status_code == 200:
            break
        time.sleep(0.05)

    assert refused.status_code == 503
    assert refused.json()["type"] == "proxy_busy"
    assert refused.headers["Retry-After"] == "1"
    assert again.status_code == 200
