"""Property-based fuzzing of /invocations in-process: whatever a client sends, the answer is never a 5xx,
and every error has the stable JSON shape; JSON whose structure is hostile is always a 400."""

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kennel_serve.settings import MIB

from tests.serve.conftest import serving

HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "image/jpeg",
            "image/png",
            "application/x-image",
            "application/json",
            "application/jsonlines",
            "text/csv",
        ]
    ),
    HEADER_TEXT,
)
ACCEPTS = st.one_of(
    st.sampled_from(["*/*", "application/json", "application/jsonlines;q=0.3, */*;q=0.1", "text/csv"]),
    HEADER_TEXT,
)


@pytest.fixture(scope="module")
def fuzz_client(tiny_model_dir, images):
    # A low pixel cap and payload limit let the fuzzer reach those paths cheaply.
    with serving(tiny_model_dir, max_payload_bytes=MIB // 4, max_image_pixels=200_000) as client:
        yield client


def bodies(images: dict[str, bytes]) -> st.SearchStrategy[bytes]:
    real = st.sampled_from(list(images.values()))
    mutated = st.tuples(real, st.integers(0, 5000), st.binary(min_size=1, max_size=8)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]
    )
    instance = st.one_of(
        real.map(lambda b: {"b64": base64.b64encode(b).decode()}), st.dictionaries(HEADER_TEXT, HEADER_TEXT)
    )
    documents = st.one_of(
        st.fixed_dictionaries({"instances": st.lists(instance, max_size=3)}),
        st.recursive(
            st.none() | st.booleans() | st.integers() | HEADER_TEXT,
            lambda c: st.lists(c) | st.dictionaries(HEADER_TEXT, c),
            max_leaves=8,
        ),
    )
    return st.one_of(
        st.binary(max_size=2000),
        mutated,
        documents.map(lambda d: json.dumps(d).encode()),
        st.lists(instance, max_size=3).map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
        hostile_structure(),
    )


def hostile_structure() -> st.SearchStrategy[bytes]:
    """JSON text built to break a parser rather than a schema: deep nesting, wide arrays, long numbers,
    duplicate keys, NaN and Infinity, lone surrogates, and invalid UTF-8 spliced in."""
    leaf = st.one_of(
        st.sampled_from(["0", "null", "true", '"aGk="', "NaN", "Infinity", "-Infinity", "1e999"]),
        st.integers(1, 300).map(lambda n: "9" * n),
        st.integers(1, 300).map(lambda n: "0." + "1" * n),
        st.integers(0xD800, 0xDFFF).map(lambda c: f'"\\u{c:04x}"'),
        HEADER_TEXT.map(json.dumps),
    )

    def nest(args: tuple[int, str, str]) -> str:
        depth, inner, bracket = args
        return (
            ("[" * depth + inner + "]" * depth) if bracket == "[" else ('{"a":' * depth + inner + "}" * depth)
        )

    structure = st.one_of(
        leaf,
        st.tuples(st.integers(0, 3000), leaf, st.sampled_from("[{")).map(nest),
        st.tuples(st.integers(0, 15_000), leaf).map(lambda t: "[" + ",".join([t[1]] * t[0]) + "]"),
        st.tuples(HEADER_TEXT, leaf, leaf).map(
            lambda t: f"{{{json.dumps(t[0])}: {t[1]}, {json.dumps(t[0])}: {t[2]}}}"
        ),
    )
    documents = st.one_of(
        structure,
        structure.map(lambda s: f'{{"instances": {s}}}'),
        structure.map(lambda s: f'{{"instances": [{{"b64": {s}}}]}}'),
    ).map(str.encode)
    invalid_utf8 = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])
    return st.one_of(
        documents,
        st.tuples(documents, st.integers(0, 200), invalid_utf8).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
        ),
    )


def test_hostile_structure_is_always_a_400(fuzz_client):
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(
        body=hostile_structure(), content_type=st.sampled_from(["application/json", "application/jsonlines"])
    )
    def check(body, content_type):
        response = fuzz_client.post("/invocations", content=body, headers={"Content-Type": content_type})
        # 413: over the fuzz client's 256 KiB body limit, which a wide array of long numbers can be.
        assert response.status_code in (400, 413), (body[:200], response.status_code, response.text)
        error = response.json()
        refusals = {
            "bad_json",
            "bad_base64",
            "bad_image",
            "empty_body",
            "too_many_images",
            "payload_too_large",
        }
        assert error["type"] in refusals
        assert error["request_id"] == response.headers["x-request-id"]

    check()


def test_no_request_gets_a_server_error(fuzz_client, images):
    @settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(body=bodies(images), content_type=CONTENT_TYPES, accept=ACCEPTS, attributes=HEADER_TEXT)
    def check(body, content_type, accept, attributes):
        headers = {
            "Content-Type": content_type,
            "Accept": accept,
            "X-Amzn-SageMaker-Custom-Attributes": attributes,
        }
        response = fuzz_client.post("/invocations", content=body, headers=headers)
        assert response.status_code < 500, (response.status_code, response.text)
        if response.status_code != 200:
            error = response.json()
            assert error["status"] == response.status_code
            assert error["request_id"] == response.headers["x-request-id"]
            assert "Traceback" not in response.text

    check()
