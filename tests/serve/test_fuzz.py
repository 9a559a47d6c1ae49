"""Property-based fuzzing of /invocations in-process: whatever a client sends, the answer is never a 5xx,
and every error has the stable JSON shape."""

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
    )


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
