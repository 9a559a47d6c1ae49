"""The response shape: the manifest's `default_response` (top_k, or the seed's raw `scores`), the request's
`output=` custom attribute over it both ways, one row per image, and 400s for values that mean nothing.
In-process over the tiny model, whose logits PyTorch gives directly."""

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from kennel_serve.codecs import InferenceError, parse_response_shape

from tests.serve.conftest import (
    TINY_LABELS,
    TINY_PREPROCESSING,
    as_decoded,
    assert_error,
    serving,
    torch_logits,
)

NAMES = ("landscape.jpg", "portrait.jpg", "gray.jpg")


def with_manifest(source: Path, target: Path, **changes: object) -> Path:
    """A copy of the model directory at `source` whose manifest has `changes`."""
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    (target / "manifest.json").write_text(json.dumps({**manifest, **changes}))
    return target


@pytest.fixture(scope="module")
def scores_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model as convert-seed declares a seed model: format_version 2, default_response scores."""
    target = tmp_path_factory.mktemp("scores") / "model"
    return with_manifest(tiny_model_dir, target, format_version=2, default_response="scores")


@pytest.fixture(scope="module")
def scores_client(scores_model_dir):
    with serving(scores_model_dir) as client:
        yield client


def invoke(client, data: bytes, attributes: str | None = None, **headers: str):
    headers = {"Content-Type": "image/jpeg", **headers}
    if attributes is not None:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
    return client.post("/invocations", content=data, headers=headers)


def test_a_scores_model_answers_a_plain_jpeg_with_its_logits_as_one_row(
    scores_client, scores_model_dir, tiny_model, images
):
    for name in NAMES:
        for accept in ({}, {"Accept": "application/json"}):  # the SageMaker SDK's JSONDeserializer sends it
            response = invoke(scores_client, images[name], **accept)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json"
            rows = response.json()
            assert isinstance(rows, list) and len(rows) == 1 and len(rows[0]) == len(TINY_LABELS)
            expected = torch_logits(
                tiny_model, TINY_PREPROCESSING, as_decoded(scores_model_dir, images[name])
            )
            np.testing.assert_allclose(rows[0], expected, atol=1e-5, err_msg=name)
            assert int(np.argmax(rows, 1)[0]) == int(np.argmax(expected))  # the seed notebook's reading


def test_a_version_1_model_still_answers_top_k(tiny_model_dir, tiny_client, images):
    manifest = json.loads((tiny_model_dir / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and "default_response" not in manifest
    (predictions,) = invoke(tiny_client, images["square.jpg"]).json()["predictions"]
    assert [p["label"] for p in predictions] == [TINY_LABELS[p["index"]] for p in predictions]


@pytest.mark.parametrize("attributes", ["output=top_k", "OUTPUT = Top_K; top_k=2", "top_k=2"])
def test_a_scores_model_answers_top_k_when_asked(
    scores_client, scores_model_dir, tiny_model, images, attributes
):
    """`output=top_k`, or a `top_k=N` alone: clients that always sent top_k keep their shape."""
    response = invoke(scores_client, images["landscape.jpg"], attributes)
    assert response.status_code == 200, response.text
    (predictions,) = response.json()["predictions"]
    assert len(predictions) == (2 if "top_k=" in attributes else len(TINY_LABELS))
    logits = torch_logits(
        tiny_model, TINY_PREPROCESSING, as_decoded(scores_model_dir, images["landscape.jpg"])
    )
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    for prediction in predictions:
        assert prediction["probability"] == pytest.approx(softmax[prediction["index"]], abs=1e-5)


def test_a_top_k_model_answers_scores_when_asked(tiny_client, tiny_model_dir, tiny_model, images):
    response = invoke(tiny_client, images["portrait.jpg"], "trace=1, output=scores")
    assert response.status_code == 200, response.text
    (row,) = response.json()
    expected = torch_logits(
        tiny_model, TINY_PREPROCESSING, as_decoded(tiny_model_dir, images["portrait.jpg"])
    )
    np.testing.assert_allclose(row, expected, atol=1e-5)


def test_several_images_answer_one_row_each_in_order(scores_client, images):
    alone = [invoke(scores_client, images[name]).json()[0] for name in NAMES]
    instances = [{"b64": base64.b64encode(images[name]).decode()} for name in NAMES]
    rows = scores_client.post("/invocations", json={"instances": instances}).json()
    assert len(rows) == len(NAMES)
    np.testing.assert_allclose(rows, alone, atol=1e-6)
    lines = "".join(json.dumps(instance) + "\n" for instance in instances)
    response = scores_client.post(
        "/invocations", content=lines, headers={"Content-Type": "application/jsonlines"}
    )
    assert response.headers["content-type"] == "application/jsonlines"
    # Each line is what that image alone gets as JSON.
    answers = [json.loads(line) for line in response.text.splitlines()]
    assert [len(answer) for answer in answers] == [1] * len(NAMES)
    np.testing.assert_allclose([answer[0] for answer in answers], alone, atol=1e-6)


@pytest.mark.parametrize("attributes", ["output=logits", "output=", "output=scores, top_k=3"])
def test_bad_output_attribute_is_400(scores_client, tiny_client, images, attributes):
    for client in (scores_client, tiny_client):
        body = assert_error(invoke(client, images["square.jpg"], attributes), 400, "bad_custom_attributes")
        assert ("top_k" in body["error"]) and ("scores" in body["error"])


def test_errors_stay_as_they_were_for_a_scores_model(scores_client, images):
    assert_error(invoke(scores_client, images["square.jpg"][:300]), 400, "bad_image")
    assert_error(invoke(scores_client, images["square.jpg"], Accept="text/csv"), 406, "not_acceptable")
    assert_error(invoke(scores_client, b"a,b", **{"Content-Type": "text/csv"}), 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("attributes", "default", "shape"),
    [
        (None, "scores", "scores"),
        (None, "top_k", "top_k"),
        ("top_k=3", "scores", "top_k"),
        ("output=scores", "top_k", "scores"),
        ("Output=SCORES", "top_k", "scores"),
        ("output=top_k, top_k=3", "scores", "top_k"),
        ("a=b; output=scores", "top_k", "scores"),
    ],
)
def test_parse_response_shape(attributes, default, shape):
    assert parse_response_shape(attributes, default) == shape


def test_parse_response_shape_lists_what_is_supported():
    with pytest.raises(InferenceError) as caught:
        parse_response_shape("output=probabilities", "top_k")
    assert caught.value.status == 400 and caught.value.details == {"supported": ["top_k", "scores"]}
