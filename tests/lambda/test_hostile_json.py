"""Hostile JSON and events of any shape: each structure class is a 400 with the JSON error body before the
endpoint is called, and the handler answers every event, whatever its shape, with a request id."""

import base64
import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kennel_proxy.errors import RETRY_AFTER_S
from kennel_proxy.local_runtime import LocalRuntime
from kennel_proxy.proxy import Proxy
from kennel_proxy.validation import JSON_LIMITS

from . import conftest

LIMITS = JSON_LIMITS
HOSTILE = {
    "nesting": "[" * (LIMITS.max_depth + 1) + "]" * (LIMITS.max_depth + 1),
    "values": json.dumps({"image": [0] * LIMITS.max_values}),
    "long number": '{"top_k": 1' + "0" * LIMITS.max_number_chars + "}",
    "long key": json.dumps({"k" * (LIMITS.max_key_chars + 1): 1}),
    "duplicate keys": '{"image": "aGk=", "image": "aGk="}',
    "NaN": '{"image": "aGk=", "top_k": NaN}',
    "Infinity": '{"top_k": -Infinity, "image": "aGk="}',
    "lone surrogate": '{"image": "\\ud800"}',
    "lone low surrogate in a key": '{"\\udfff": 1}',
}
MESSAGES = {
    "nesting": "nested",
    "values": "values",
    "long number": "number",
    "long key": "key",
    "duplicate keys": "twice",
    "NaN": "NaN",
    "Infinity": "Infinity",
    "lone surrogate": "surrogate",
    "lone low surrogate in a key": "surrogate",
}
INVALID_UTF8 = [b'{"image": "\xc3\x28"}', b'{"image": "\xed\xa0\x80"}', b'{"url": "\xff"}']


@pytest.fixture
def unreachable() -> Proxy:
    """The proxy with a real client to a port where nothing listens: any call that reaches it ends in a
    502."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return Proxy.from_settings(conftest.settings(), LocalRuntime(f"http://127.0.0.1:{port}", 0.5, 0.5))


def error_of(response: dict, status: int, error_type: str, request_id: str) -> dict:
    assert response["statusCode"] == status, response
    assert response["headers"]["Content-Type"] == "application/json"
    body = json.loads(response["body"])
    assert (body["type"], body["request_id"]) == (error_type, request_id)
    return body


@pytest.mark.parametrize("kind", HOSTILE)
def test_each_hostile_class_is_a_400_in_every_event_kind(unreachable, events, context, kind):
    text = HOSTILE[kind]
    encoded = base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()
    for event in (
        events.function_url(text, "application/json", False),
        events.rest(encoded, "application/json", True),
    ):
        body = error_of(unreachable.handle(event, context), 400, "invalid_json", context.aws_request_id)
        assert MESSAGES[kind] in body["error"]


@pytest.mark.parametrize("body", INVALID_UTF8)
def test_invalid_utf8_is_a_400(unreachable, events, context, body):
    event = events.function_url(base64.b64encode(body).decode(), "application/json", True)

    assert (
        "UTF-8"
        in error_of(unreachable.handle(event, context), 400, "invalid_json", context.aws_request_id)["error"]
    )


def test_a_text_body_holding_a_lone_surrogate_is_a_400(unreachable, events, context):
    # An event's JSON can carry "\ud800" in its body string; Python then holds a lone surrogate.
    event = events.function_url('{"image": "aGk="}\ud800', "application/json", False)

    error_of(unreachable.handle(event, context), 400, "invalid_body", context.aws_request_id)


def test_a_million_levels_of_nesting_is_a_400(unreachable, events, context):
    event = events.function_url("[" * 1_000_000 + "]" * 1_000_000, "application/json", False)

    error_of(unreachable.handle(event, context), 400, "invalid_json", context.aws_request_id)


def test_direct_invocations_are_held_to_the_same_limits(unreachable, context):
    deep: object = "aGk="
    for _ in range(5000):
        deep = [deep]
    responses = {
        "deep": unreachable.handle({"image": deep}, context),
        "NaN": unreachable.handle({"image": "aGk=", "top_k": float("nan")}, context),
        "wide": unreachable.handle({"image": list(range(5000))}, context),
    }

    for response in responses.values():
        error_of(response, 400, "invalid_json", context.aws_request_id)


def test_the_size_limits_are_checked_before_json_loads(unreachable, events, context, monkeypatch):
    def parser_must_not_run(*args, **kwargs):
        raise AssertionError("json.loads ran on a body the limits refuse")

    texts = ("[" * 100_000 + "]" * 100_000, "[" + "0," * 100_000 + "0]", "1" * 100_000)
    with monkeypatch.context() as patched:
        patched.setattr(json, "loads", parser_must_not_run)
        responses = [
            unreachable.handle(events.function_url(t, "application/json", False), context) for t in texts
        ]

    for response in responses:
        error_of(response, 400, "invalid_json", context.aws_request_id)


def test_a_json_body_within_the_limits_reaches_the_endpoint(unreachable, events, context):
    text = json.dumps({"image": base64.b64encode(b"image bytes").decode(), "top_k": 3})

    response = unreachable.handle(events.function_url(text, "application/json", False), context)

    error_of(response, 502, "endpoint_unreachable", context.aws_request_id)
    assert response["headers"]["Retry-After"] == RETRY_AFTER_S


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
SHAPED_EVENTS = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from(["2.0", "1.0", 2]) | JSON_VALUES,
        "requestContext": JSON_VALUES | st.fixed_dictionaries({"http": JSON_VALUES}),
        "httpMethod": st.sampled_from(["POST", "GET", "OPTIONS"]) | JSON_VALUES,
        "headers": JSON_VALUES
        | st.dictionaries(st.sampled_from(["content-type", "origin", "Content-Type"]), JSON_VALUES),
        "body": JSON_VALUES | st.sampled_from(["aGk=", '{"image": "aGk="}', "[[[[", "\ud800"]),
        "isBase64Encoded": JSON_VALUES,
        "queryStringParameters": JSON_VALUES | st.fixed_dictionaries({"top_k": JSON_VALUES}),
        "image": JSON_VALUES,
        "url": JSON_VALUES,
        "top_k": JSON_VALUES,
    },
)


def test_every_event_gets_a_json_answer_with_a_request_id(unreachable, context):
    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(event=JSON_VALUES | SHAPED_EVENTS)
    def check(event):
        response = unreachable.handle(event, context)

        assert isinstance(response["statusCode"], int) and 200 <= response["statusCode"] < 600
        assert response["headers"].get("Content-Type") == "application/json" or response["statusCode"] == 204
        if response["statusCode"] != 204:
            assert json.loads(response["body"])["request_id"] == context.aws_request_id
        assert response["statusCode"] != 500, response["body"]  # 500 is the handler's own bug

    check()


class BrokenRuntime:
    def invoke_endpoint(self, **arguments):
        raise KeyError("a bug")


def test_a_bug_is_a_500_with_a_request_id_not_a_raise(events, context):
    broken = Proxy.from_settings(conftest.settings(), BrokenRuntime())

    response = broken.handle(events.function_url("aGk=", "image/jpeg", True), context)

    error_of(response, 500, "internal_error", context.aws_request_id)
    assert "KeyError" not in response["body"]
