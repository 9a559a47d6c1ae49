"""Hostile JSON structure: each class is refused with a 400 and the JSON error body, by the reader itself and
through /invocations (JSON and JSON Lines), before json.loads does any work on it."""

import base64
import json

import pytest

from kennel_common import strict_json
from kennel_common.strict_json import LIMITS, JsonRefused
from tests.serve.conftest import assert_error

GOOD = {"instances": [{"b64": base64.b64encode(b"\x89PNG not really").decode()}]}

HOSTILE = {
    "nesting": ("[" * (LIMITS.max_depth + 1) + "]" * (LIMITS.max_depth + 1)).encode(),
    "values": json.dumps({"instances": [0] * LIMITS.max_values}).encode(),
    "long number": b'{"instances": 1' + b"0" * LIMITS.max_number_chars + b"}",
    "long float": b'{"instances": 0.' + b"1" * LIMITS.max_number_chars + b"}",
    "long key": json.dumps({"k" * (LIMITS.max_key_chars + 1): 1}).encode(),
    "duplicate keys": b'{"instances": [], "instances": []}',
    "NaN": b'{"instances": NaN}',
    "Infinity": b'{"instances": [-Infinity]}',
    "invalid UTF-8": b'{"instances": [{"b64": "\xc3\x28"}]}',
    "UTF-8 surrogate": b'{"instances": "\xed\xa0\x80"}',
    "lone surrogate": b'{"instances": [{"b64": "\\ud800"}]}',
    "lone low surrogate in a key": b'{"\\udc00": 1}',
}
MESSAGES = {
    "nesting": "nested",
    "values": "values",
    "long number": "number",
    "long float": "number",
    "long key": "key",
    "duplicate keys": "twice",
    "NaN": "NaN",
    "Infinity": "Infinity",
    "invalid UTF-8": "UTF-8",
    "UTF-8 surrogate": "UTF-8",
    "lone surrogate": "surrogate",
    "lone low surrogate in a key": "surrogate",
}


def test_standard_json_within_the_limits_reads_as_json_loads_does():
    document = {"a": [1, 2.5, -3e10, None, True, "é ✓ 😀", {"b": '\\"quoted\\"'}], "c": {}}
    text = json.dumps(document, ensure_ascii=False)

    assert strict_json.loads(text.encode()) == json.loads(text) == document
    assert strict_json.loads(json.dumps(GOOD)) == GOOD


def test_a_document_exactly_at_every_limit_is_read():
    depth = LIMITS.max_depth
    nested: list = []
    for _ in range(depth - 1):
        nested = [nested]
    assert strict_json.loads(b"[" * depth + b"]" * depth) == nested
    assert len(strict_json.loads(json.dumps([0] * (LIMITS.max_values - 1)))) == LIMITS.max_values - 1
    assert strict_json.loads(b"9" * LIMITS.max_number_chars) == int("9" * LIMITS.max_number_chars)
    assert strict_json.loads(json.dumps({"k" * LIMITS.max_key_chars: 1})) == {"k" * LIMITS.max_key_chars: 1}


def test_strings_may_hold_what_structure_may_not():
    # Brackets, commas, digits and the word NaN inside strings are text, not structure.
    text = json.dumps({"s": "[[[[" * 100 + "," * 20_000 + "9" * 1000 + "NaN"})

    assert strict_json.loads(text) == json.loads(text)


@pytest.mark.parametrize("kind", HOSTILE)
def test_each_hostile_class_is_refused_with_a_message(kind):
    with pytest.raises(JsonRefused, match=MESSAGES[kind]):
        strict_json.loads(HOSTILE[kind])


@pytest.mark.parametrize("kind", ["nesting", "values", "long number"])
def test_size_limits_are_checked_before_the_parser_runs(kind, monkeypatch):
    def parser_must_not_run(*args, **kwargs):
        raise AssertionError("json.loads ran on a body the limits refuse")

    monkeypatch.setattr(strict_json.json, "loads", parser_must_not_run)
    huge = {
        "nesting": b"[" * 1_000_000 + b"]" * 1_000_000,
        "values": b"[" + b"0," * 1_000_000 + b"0]",
        "long number": b"1" * 1_000_000,
    }[kind]

    with pytest.raises(JsonRefused):
        strict_json.loads(huge)


@pytest.mark.parametrize("kind", HOSTILE)
def test_invocations_answers_400_json_for_each_class(tiny_client, kind):
    response = tiny_client.post(
        "/invocations", content=HOSTILE[kind], headers={"Content-Type": "application/json"}
    )

    assert MESSAGES[kind] in assert_error(response, 400, "bad_json")["error"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_json_lines_answer_400_with_the_line_number(tiny_client, kind, images):
    good = json.dumps({"b64": base64.b64encode(images["square.jpg"]).decode()}).encode()
    body = good + b"\n" + HOSTILE[kind].replace(b"\n", b" ") + b"\n"

    response = tiny_client.post(
        "/invocations", content=body, headers={"Content-Type": "application/jsonlines"}
    )

    assert "line 2" in assert_error(response, 400, "bad_json")["error"]


def test_a_million_levels_of_nesting_is_a_400_not_a_500(tiny_client):
    body = b"[" * 1_000_000 + b"]" * 1_000_000

    response = tiny_client.post("/invocations", content=body, headers={"Content-Type": "application/json"})

    assert_error(response, 400, "bad_json")


def test_too_many_images_in_one_request(tiny_client):
    lines = b'{"b64": "aGk="}\n' * (LIMITS.max_records + 1)
    instances = json.dumps({"instances": [{"b64": "aGk="}] * (LIMITS.max_records + 1)}).encode()

    for body, content_type in ((lines, "application/jsonlines"), (instances, "application/json")):
        response = tiny_client.post("/invocations", content=body, headers={"Content-Type": content_type})

        assert str(LIMITS.max_records) in assert_error(response, 400, "too_many_images")["error"]


def test_the_toolkit_decoder_refuses_hostile_json_with_a_400():
    from sagemaker_inference import decoder, errors

    with pytest.raises(errors.BaseInferenceToolkitError) as refused:
        decoder.decode(HOSTILE["nesting"], "application/json")

    assert refused.value.status_code == 400
    assert decoder.decode(b"[[1, 2], [3, 4]]", "application/json").tolist() == [[1, 2], [3, 4]]
