"""How SageMaker's failures reach the client. Stubbed where no emulator can produce the error (moto has no
ModelError, throttle or missing endpoint); retries and timeouts run against real servers on 127.0.0.1."""

import base64
import io
import json

import boto3
import pytest
from botocore.stub import Stubber

from kennel_proxy.endpoint import Runtime, runtime_client
from kennel_proxy.proxy import Proxy
from kennel_proxy.settings import Settings

from .conftest import ENDPOINT, REGION, settings

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\xff\xd9"
ACCOUNT = "999988887777"
LOG_STREAM = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{ENDPOINT}"


@pytest.fixture
def stubbed():
    client = boto3.client(
        "sagemaker-runtime", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"
    )
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def invoke(runtime: Runtime, context, top_k: int | None = None) -> tuple[int, dict, dict]:
    """A direct invocation with JPEG through a proxy whose client is `runtime`."""
    event = {"image": base64.b64encode(JPEG).decode()}
    if top_k is not None:
        event["top_k"] = top_k
    response = Proxy.from_settings(settings(), runtime).handle(event, context)
    return response["statusCode"], response["headers"], json.loads(response["body"])


def expected(top_k: int | None = None) -> dict:
    params = {
        "EndpointName": ENDPOINT,
        "Body": JPEG,
        "ContentType": "application/x-image",
        "Accept": "application/json",
    }
    if top_k is not None:
        params["CustomAttributes"] = f"top_k={top_k}"
    return params


def test_the_call_carries_endpoint_content_type_accept_and_top_k(stubbed, context):
    body = b'{"predictions": []}'
    stubbed.add_response(
        "invoke_endpoint",
        {"Body": io.BytesIO(body), "ContentType": "application/json"},
        expected(top_k=3),
    )

    status, _, answer = invoke(stubbed.client, context, top_k=3)

    assert status == 200
    assert answer == {"predictions": []}


@pytest.mark.parametrize(
    ("model_status", "status", "kind"),
    [(400, 400, "model_rejected_input"), (415, 415, "model_rejected_input"), (500, 502, "model_error")],
)
def test_model_error_carries_the_models_status_and_message(stubbed, context, model_status, status, kind):
    """The model's 4xx is the client's mistake and keeps its status; its 5xx is a bad gateway."""
    model_message = json.dumps({"error": "cannot decode image", "type": "bad_image", "request_id": "r-1"})
    stubbed.add_client_error(
        "invoke_endpoint",
        "ModelError",
        f'Received client error ({model_status}) from primary with message "{model_message}". '
        f"See {LOG_STREAM} in account {ACCOUNT} for more information.",
        424,
        modeled_fields={
            "OriginalStatusCode": model_status,
            "OriginalMessage": model_message,
            "LogStreamArn": LOG_STREAM,
        },
        expected_params=expected(),
    )

    response_status, _, answer = invoke(stubbed.client, context)

    assert response_status == status
    assert answer["type"] == kind
    assert answer["model_status"] == model_status
    assert answer["model_error"] == json.loads(model_message)
    assert ACCOUNT not in json.dumps(answer)


def test_model_timeout_is_504(stubbed, context):
    stubbed.add_client_error(
        "invoke_endpoint",
        "ModelError",
        'Received server error (0) from primary with message "Your invocation timed out while waiting for '
        'a response from container primary."',
        424,
        expected_params=expected(),
    )

    status, _, answer = invoke(stubbed.client, context)

    assert (status, answer["type"]) == (504, "model_timeout")


def test_missing_endpoint_is_503_and_says_so_without_the_account(stubbed, context):
    stubbed.add_client_error(
        "invoke_endpoint",
        "ValidationError",
        f"Endpoint {ENDPOINT} of account {ACCOUNT} not found.",
        400,
        expected_params=expected(),
    )

    status, _, answer = invoke(stubbed.client, context)

    assert status == 503
    assert answer["type"] == "endpoint_not_found"
    assert "does not exist" in answer["error"]
    assert ACCOUNT not in answer["error"] and ENDPOINT not in answer["error"]


def test_other_validation_errors_are_502(stubbed, context):
    stubbed.add_client_error(
        "invoke_endpoint", "ValidationError", "Inference Component Name header is required", 400
    )

    status, _, answer = invoke(stubbed.client, context)

    assert (status, answer["type"]) == (502, "endpoint_rejected")


@pytest.mark.parametrize(
    ("code", "http_status", "status", "error_type"),
    [
        ("ThrottlingException", 400, 429, "throttled"),
        ("ModelNotReadyException", 429, 503, "endpoint_unavailable"),
        ("ServiceUnavailable", 503, 503, "endpoint_unavailable"),
    ],
)
def test_retryable_errors_carry_retry_after(stubbed, context, code, http_status, status, error_type):
    stubbed.add_client_error("invoke_endpoint", code, "Rate exceeded", http_status)

    got_status, headers, answer = invoke(stubbed.client, context)

    assert (got_status, answer["type"]) == (status, error_type)
    assert int(headers["Retry-After"]) >= 1


def test_internal_failure_is_502(stubbed, context):
    stubbed.add_client_error("invoke_endpoint", "InternalFailure", "oops", 500)

    status, headers, answer = invoke(stubbed.client, context)

    assert (status, answer["type"]) == (502, "endpoint_error")
    assert "oops" not in json.dumps(answer) and "Retry-After" not in headers


def runtime_at(url: str, monkeypatch: pytest.MonkeyPatch, **overrides) -> Runtime:
    """The proxy's own client factory, pointed at a local server through AWS_ENDPOINT_URL."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    return runtime_client(settings(**overrides))


def test_throttling_is_retried_by_botocore_then_429(http_server, context, monkeypatch):
    throttle = ({"x-amzn-ErrorType": "ThrottlingException"}, b'{"message": "Rate exceeded"}')
    server = http_server(lambda request: (400, *throttle))
    runtime = runtime_at(server.url, monkeypatch, max_attempts=2)

    status, headers, answer = invoke(runtime, context)

    assert (status, answer["type"]) == (429, "throttled")
    assert int(headers["Retry-After"]) >= 1
    assert len(server.requests) == 2
    assert server.requests[0].path == f"/endpoints/{ENDPOINT}/invocations"


def test_client_read_timeout_is_504(http_server, context, monkeypatch):
    server = http_server(lambda request: (200, {}, b"{}", 30))
    runtime = runtime_at(server.url, monkeypatch, max_attempts=1, invoke_read_timeout_s=0.2)

    status, _, answer = invoke(runtime, context)

    assert (status, answer["type"]) == (504, "endpoint_timeout")


def test_retry_mode_and_attempts_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    env = {"SAGEMAKER_ENDPOINT_NAME": ENDPOINT, "KENNEL_RETRY_MODE": "adaptive", "KENNEL_MAX_ATTEMPTS": "5"}

    client = runtime_client(Settings.from_env(env))

    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 5}
