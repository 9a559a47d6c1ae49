"""The handler over realistic events of every kind, with moto as the endpoint for the happy paths."""

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.stub import Stubber

from kennel_proxy.endpoint import runtime_client
from kennel_proxy.proxy import Proxy, default_proxy, handler

from .conftest import ENDPOINT, REGION, settings

ROOT = Path(__file__).resolve().parents[2]

# moto's server decodes every request body as UTF-8 (moto/core/responses.py, setup_class), so the bytes
# sent to it must decode; real image bytes travel in the Stubber and local-adapter tests.
JPEG = b"JFIF stand-in image bytes for moto"
PNG = b"PNG stand-in image bytes for moto"
PREDICTIONS = {"predictions": [{"label": "Labrador_retriever", "index": 95, "probability": 0.91}]}


@pytest.fixture
def offline(no_endpoint: Stubber) -> Proxy:
    """The proxy with a client that answers nothing."""
    return Proxy.from_settings(settings(), runtime=no_endpoint.client)


class Recording:
    """The proxy's own client, with each InvokeEndpoint call's arguments kept, optionally slowed down."""

    def __init__(self, client, delay_s: float = 0.0) -> None:
        self.client, self.delay_s, self.calls = client, delay_s, []

    def invoke_endpoint(self, **arguments):
        self.calls.append(arguments)
        time.sleep(self.delay_s)
        return self.client.invoke_endpoint(**arguments)


@pytest.fixture
def sent(moto) -> Recording:
    """What reached the endpoint (moto), call by call."""
    return Recording(runtime_client(settings()))


@pytest.fixture
def recorded(moto, sent: Recording) -> Proxy:
    """The proxy with moto as its endpoint, through `sent`."""
    return moto.proxy(runtime=sent)


def body_of(response: dict) -> dict:
    assert response["headers"]["Content-Type"] == "application/json"
    return json.loads(response["body"])


def test_rest_v1_event_with_base64_jpeg_returns_the_predictions(moto, sent, recorded, events, context):
    moto.queue_results(PREDICTIONS)
    event = events.rest(base64.b64encode(JPEG).decode(), "image/jpeg", True)

    response = recorded.handle(event, context)

    assert response["statusCode"] == 200
    assert body_of(response) == PREDICTIONS
    assert sent.calls == [
        {"EndpointName": ENDPOINT, "Body": JPEG, "ContentType": "image/jpeg", "Accept": "application/json"}
    ]


def test_function_url_event_with_png_and_top_k(moto, sent, recorded, events, context):
    moto.queue_results(PREDICTIONS)
    event = events.function_url(
        base64.b64encode(PNG).decode(),
        "image/png",
        True,
        rawQueryString="top_k=3",
        queryStringParameters={"top_k": "3"},
    )

    response = recorded.handle(event, context)

    assert response["statusCode"] == 200
    assert body_of(response) == PREDICTIONS
    (call,) = sent.calls
    assert (call["Body"], call["ContentType"], call["CustomAttributes"]) == (PNG, "image/png", "top_k=3")


def test_http_api_event_with_json_base64_image(moto, sent, recorded, events, context):
    moto.queue_results(PREDICTIONS)
    document = json.dumps({"image": base64.b64encode(JPEG).decode(), "top_k": 2})
    event = events.function_url(document, "application/json; charset=utf-8", False)

    response = recorded.handle(event, context)

    assert response["statusCode"] == 200
    assert body_of(response) == PREDICTIONS
    (call,) = sent.calls
    assert (call["Body"], call["ContentType"], call["CustomAttributes"]) == (
        JPEG,
        "application/x-image",
        "top_k=2",
    )


def test_direct_invocation_with_base64_image(moto, context):
    moto.queue_results(PREDICTIONS)

    response = moto.proxy().handle({"image": base64.b64encode(JPEG).decode()}, context)

    assert response["statusCode"] == 200
    assert body_of(response) == PREDICTIONS


def test_endpoint_answer_that_is_not_json_is_a_502(moto, context):
    # moto's static default answer is the literal text "body".
    response = moto.proxy().handle({"image": base64.b64encode(JPEG).decode()}, context)

    assert response["statusCode"] == 502
    assert body_of(response)["type"] == "invalid_model_response"


def test_one_json_log_line_per_request(moto, sent, recorded, events, context, capsys):
    moto.queue_results(PREDICTIONS)
    sent.delay_s = 0.05  # the endpoint's time is part of the request's latency
    recorded.handle(events.rest(base64.b64encode(JPEG).decode(), "image/jpeg", True), context)

    lines = capsys.readouterr().out.strip().splitlines()

    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["request_id"] == context.aws_request_id
    assert line["endpoint"] == ENDPOINT
    assert line["status"] == 200
    assert line["latency_ms"] >= 50
    assert line["event"] == "http-v1"


@pytest.mark.parametrize(
    ("body", "content_type", "base64_encoded", "status", "error_type"),
    [
        ("aGVsbG8=", "text/plain", True, 415, "unsupported_media_type"),
        ("a=b", "application/x-www-form-urlencoded", False, 415, "unsupported_media_type"),
        (None, "image/jpeg", True, 400, "empty_body"),
        ("not base64!!", "image/jpeg", True, 400, "invalid_base64"),
        ("{not json", "application/json", False, 400, "invalid_json"),
        ("[1, 2]", "application/json", False, 400, "invalid_json"),
        ('{"image": "aGk=", "url": "https://x.test/a.jpg"}', "application/json", False, 400, "invalid_json"),
        ('{"picture": "aGk="}', "application/json", False, 400, "invalid_json"),
        ('{"image": "%%%"}', "application/json", False, 400, "invalid_base64"),
        ('{"image": "aGk=", "top_k": 0}', "application/json", False, 400, "invalid_top_k"),
        ('{"image": "aGk=", "top_k": "many"}', "application/json", False, 400, "invalid_top_k"),
        ('{"image": "aGk=", "top_k": true}', "application/json", False, 400, "invalid_top_k"),
        ('{"url": 7}', "application/json", False, 400, "invalid_json"),
    ],
)
def test_bad_input_is_refused_before_the_endpoint(
    no_endpoint, offline, events, context, body, content_type, base64_encoded, status, error_type
):
    for event in (
        events.rest(body, content_type, base64_encoded),
        events.function_url(body, content_type, base64_encoded),
    ):
        response = offline.handle(event, context)

        assert response["statusCode"] == status
        assert body_of(response)["type"] == error_type
        assert body_of(response)["request_id"] == context.aws_request_id
    no_endpoint.assert_no_pending_responses()


def test_oversized_images_are_413_in_every_encoding(no_endpoint, events, context):
    capped = Proxy.from_settings(settings(max_image_bytes=1000), runtime=no_endpoint.client)
    big = bytes(1001)
    encoded = base64.b64encode(big).decode()

    responses = [
        capped.handle(events.function_url(encoded, "image/jpeg", True), context),
        capped.handle(events.rest(json.dumps({"image": encoded}), "application/json", False), context),
        capped.handle({"image": encoded}, context),
    ]

    assert [r["statusCode"] for r in responses] == [413, 413, 413]
    assert {body_of(r)["type"] for r in responses} == {"image_too_large"}


def test_top_k_out_of_range_in_the_query(offline, events, context):
    event = events.function_url("aGk=", "image/jpeg", True, queryStringParameters={"top_k": "5000"})

    response = offline.handle(event, context)

    assert (response["statusCode"], body_of(response)["type"]) == (400, "invalid_top_k")
    assert "from 1 to 1000" in body_of(response)["error"]


@pytest.mark.parametrize("top_k", ["²", "٣", "+3", "1_0", " 3", "3.0", "0x10", "", "-1", "9" * 5000])
def test_top_k_that_is_not_ascii_digits_is_400(no_endpoint, offline, events, context, top_k):
    """str.isdigit passes "²" (which int() cannot read) and "٣" (which it reads as 3): only 0-9 count."""
    in_query = events.function_url("aGk=", "image/jpeg", True, queryStringParameters={"top_k": top_k})
    in_json = events.rest(json.dumps({"image": "aGk=", "top_k": top_k}), "application/json", False)

    for event in (in_query, in_json):
        response = offline.handle(event, context)

        assert (response["statusCode"], body_of(response)["type"]) == (400, "invalid_top_k")
    no_endpoint.assert_no_pending_responses()


def test_methods_other_than_post(offline, events, context):
    event = events.rest(None, "image/jpeg", False, httpMethod="GET")

    response = offline.handle(event, context)

    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "POST, OPTIONS"


def test_direct_invocation_must_be_an_object(offline, context):
    response = offline.handle(["https://x.test/a.jpg"], context)

    assert (response["statusCode"], body_of(response)["type"]) == (400, "invalid_json")
    assert "must be an object" in body_of(response)["error"]


def test_url_bodies_are_refused_when_no_host_is_allowed(offline, context):
    response = offline.handle({"url": "https://images.example.com/dog.jpg"}, context)

    assert response["statusCode"] == 400
    assert body_of(response)["type"] == "url_not_allowed"


def test_cors_headers_follow_the_allowed_origins(moto, events, context):
    proxy = moto.proxy(cors_allow_origins=frozenset({"https://app.example"}))
    moto.queue_results(PREDICTIONS)
    headers = {"content-type": "image/jpeg", "origin": "https://app.example"}
    preflight = events.function_url(None, "image/jpeg", False, headers=headers)
    preflight["requestContext"]["http"]["method"] = "OPTIONS"
    allowed = events.function_url(base64.b64encode(JPEG).decode(), "image/jpeg", True, headers=headers)
    other = events.function_url(
        "aGk=", "image/jpeg", True, headers={**headers, "origin": "https://evil.example"}
    )

    preflight_response = proxy.handle(preflight, context)
    allowed_response = proxy.handle(allowed, context)
    other_response = proxy.handle(other, context)

    assert preflight_response["statusCode"] == 204
    assert preflight_response["headers"]["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in preflight_response["headers"]["Access-Control-Allow-Methods"]
    assert allowed_response["statusCode"] == 200
    assert allowed_response["headers"]["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Access-Control-Allow-Origin" not in other_response["headers"]


def test_no_cors_headers_by_default(moto, events, context):
    moto.queue_results(PREDICTIONS)
    event = events.function_url(base64.b64encode(JPEG).decode(), "image/jpeg", True)
    event["headers"]["origin"] = "https://app.example"

    response = moto.proxy().handle(event, context)

    assert not [name for name in response["headers"] if name.startswith("Access-Control")]


def test_nothing_from_the_context_or_environment_reaches_a_response(offline, events, context, monkeypatch):
    monkeypatch.setenv("KENNEL_SECRET_PROBE", "s3cr3t-value-from-env")
    responses = [
        offline.handle(events.rest("aGk=", "text/plain", True), context),
        offline.handle(events.function_url(None, "image/jpeg", True), context),
        offline.handle({"url": "file:///etc/passwd"}, context),
    ]
    text = json.dumps(responses)

    for secret in (
        context.function_name,
        context.invoked_function_arn,
        context.log_group_name,
        context.log_stream_name,
        "999988887777",
        ENDPOINT,
        "s3cr3t-value-from-env",
    ):
        assert secret not in text
    for response in responses:
        assert set(body_of(response)) == {"error", "type", "request_id"}


def test_the_lambda_entry_reads_the_environment_once_on_its_first_invocation(events, context, monkeypatch):
    """`handler` builds its proxy from the environment when first called, not at import, and warm
    invocations reuse it: a setting changed after that first call is not read."""
    monkeypatch.setenv("SAGEMAKER_ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("KENNEL_MAX_IMAGE_BYTES", "1000")
    default_proxy.cache_clear()
    image = events.function_url(base64.b64encode(bytes(1001)).decode(), "image/jpeg", True)
    try:
        first = handler(image, context)
        monkeypatch.setenv("KENNEL_MAX_IMAGE_BYTES", "5000")
        warm = handler(image, context)
        built = default_proxy()
    finally:
        default_proxy.cache_clear()

    assert [first["statusCode"], warm["statusCode"]] == [413, 413]
    assert built.settings.max_image_bytes == 1000


@pytest.mark.parametrize("init_type, built", [("provisioned-concurrency", 1), ("on-demand", 0)])
def test_provisioned_concurrency_builds_the_proxy_in_the_init_phase(init_type, built):
    """An environment that provisioned concurrency initialises ahead of traffic builds its client while
    importing the handler; an on-demand one leaves it to the first invocation."""
    env = {
        **os.environ,
        "AWS_LAMBDA_INITIALIZATION_TYPE": init_type,
        "SAGEMAKER_ENDPOINT_NAME": ENDPOINT,
        "AWS_DEFAULT_REGION": REGION,
    }
    probe = "from kennel_proxy import proxy; print(proxy.default_proxy.cache_info().currsize)"
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(built)
