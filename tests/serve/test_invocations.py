"""POST /invocations in-process: every input format, the response shape, top-k, Accept negotiation and
every error status, over the tiny model."""

import base64
import json
import logging
import string

import numpy as np
import pytest
from kennel_serve.settings import MIB

from tests.serve.conftest import (
    TINY_LABELS,
    TINY_PREPROCESSING,
    as_decoded,
    assert_error,
    encode,
    png_header,
    serving,
    torch_probabilities,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def check_predictions(predictions: list, top_k: int = 3) -> None:
    assert len(predictions) == top_k
    assert [p["label"] for p in predictions] == [TINY_LABELS[p["index"]] for p in predictions]
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    if top_k == len(TINY_LABELS):
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/x-image", "IMAGE/JPEG; charset=binary"])
def test_raw_image_gives_torch_probabilities(tiny_client, tiny_model, tiny_model_dir, images, content_type):
    response = tiny_client.post(
        "/invocations", content=images["landscape.jpg"], headers={"Content-Type": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    (predictions,) = response.json()["predictions"]
    check_predictions(predictions)
    # The JPEG is over twice the tiny model's resize, so it is decoded at reduced scale: torch's eval
    # transform gets exactly those pixels (losslessly).
    expected = torch_probabilities(
        tiny_model, TINY_PREPROCESSING, as_decoded(tiny_model_dir, images["landscape.jpg"])
    )
    served = np.array([p["probability"] for p in sorted(predictions, key=lambda p: p["index"])])
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_png_sent_as_jpeg_is_sniffed(tiny_client, images):
    response = tiny_client.post(
        "/invocations", content=images["rgba.png"], headers={"Content-Type": "image/jpeg"}
    )
    as_png = tiny_client.post(
        "/invocations", content=images["rgba.png"], headers={"Content-Type": "image/png"}
    )
    assert response.status_code == as_png.status_code == 200
    assert response.json() == as_png.json()


def test_json_with_many_images_answers_in_order(tiny_client, images):
    names = ["portrait.jpg", "rgba.png", "gray.jpg", "palette.png"]
    body = {"instances": [{"b64": b64(images[name])} for name in names]}
    response = tiny_client.post("/invocations", json=body)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(names)
    for name, one in zip(names, predictions, strict=True):
        alone = tiny_client.post("/invocations", content=images[name], headers={"Content-Type": "image/png"})
        (expected,) = alone.json()["predictions"]
        assert [p["index"] for p in one] == [p["index"] for p in expected]
        assert [p["probability"] for p in one] == pytest.approx(
            [p["probability"] for p in expected], abs=1e-6
        )


def test_json_lines_in_json_lines_out(tiny_client, images):
    lines = [json.dumps({"b64": b64(images[name])}) for name in ("square.jpg", "gray.jpg", "portrait.jpg")]
    response = tiny_client.post(
        "/invocations", content="\n".join(lines) + "\n", headers={"Content-Type": "application/jsonlines"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/jsonlines"
    # One line per image, in request order (batch transform joins output lines to input lines by order).
    alone = [
        tiny_client.post("/invocations", content=images[name], headers={"Content-Type": "image/jpeg"}).json()
        for name in ("square.jpg", "gray.jpg", "portrait.jpg")
    ]
    assert [json.loads(line) for line in response.text.splitlines()] == alone


def test_top_k_from_custom_attributes(tiny_client, images):
    headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "trace=1, top_k=2"}
    response = tiny_client.post("/invocations", content=images["square.jpg"], headers=headers)
    check_predictions(response.json()["predictions"][0], top_k=2)
    # More than there are classes is all the classes.
    headers["X-Amzn-SageMaker-Custom-Attributes"] = "top_k=50"
    response = tiny_client.post("/invocations", content=images["square.jpg"], headers=headers)
    check_predictions(response.json()["predictions"][0], top_k=3)


@pytest.mark.parametrize(
    "attributes",
    [
        "top_k=0",
        "top_k=many",
        "top_k=-3",
        # Only ASCII digits: int() alone reads each of these (or raises on the last two).
        "top_k=+3",
        "top_k=1_0",
        "top_k=0x10",
        "top_k=²".encode(),
        "top_k=٣".encode(),
        "top_k=" + "9" * 5000,
    ],
)
def test_bad_top_k_is_400(tiny_client, images, attributes):
    headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": attributes}
    response = tiny_client.post("/invocations", content=images["square.jpg"], headers=headers)
    assert_error(response, 400, "bad_custom_attributes")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/jsonlines", "application/jsonlines"),
        ("application/json;q=0.5, application/jsonlines", "application/jsonlines"),
        ("application/jsonlines;q=0.1, */*;q=0.9", "application/json"),
        ("text/html, application/*;q=0.2", "application/json"),
        ("*/*", "application/json"),
    ],
)
def test_accept_negotiation(tiny_client, images, accept, expected):
    headers = {"Content-Type": "image/jpeg", "Accept": accept}
    response = tiny_client.post("/invocations", content=images["square.jpg"], headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == expected


@pytest.mark.parametrize("accept", ["text/csv", "application/json;q=0, application/jsonlines;q=0", "image/*"])
def test_unacceptable_accept_is_406_listing_what_is_supported(tiny_client, images, accept):
    headers = {"Content-Type": "image/jpeg", "Accept": accept}
    body = assert_error(
        tiny_client.post("/invocations", content=images["square.jpg"], headers=headers), 406, "not_acceptable"
    )
    assert body["supported"] == ["application/json", "application/jsonlines"]


def test_default_accept_setting(tiny_model_dir, images):
    with serving(tiny_model_dir, default_accept="application/jsonlines") as client:
        response = client.post(
            "/invocations", content=images["square.jpg"], headers={"Content-Type": "image/jpeg"}
        )
        assert response.headers["content-type"] == "application/jsonlines"


@pytest.mark.parametrize(
    "content_type", ["text/csv", "application/x-npy", "", "multipart/form-data; boundary=x"]
)
def test_unsupported_content_type_is_415_listing_what_is_supported(tiny_client, images, content_type):
    response = tiny_client.post(
        "/invocations", content=images["square.jpg"], headers={"Content-Type": content_type}
    )
    body = assert_error(response, 415, "unsupported_media_type")
    assert "image/jpeg" in body["supported"] and "application/json" in body["supported"]


@pytest.mark.parametrize(
    ("content_type", "body", "kind"),
    [
        ("image/jpeg", b"", "empty_body"),
        ("image/jpeg", b"not an image at all", "bad_image"),
        ("application/json", b"{not json", "bad_json"),
        ("application/json", b'{"instances": []}', "bad_json"),
        ("application/json", b'{"instances": ["abc"]}', "bad_json"),
        ("application/json", b'{"instances": [{"b64": "***"}]}', "bad_base64"),
        ("application/json", b'{"instances": [{"b64": "aGVsbG8="}]}', "bad_image"),
        ("application/json", b"\xff\xfe", "bad_json"),
        ("application/jsonlines", b'{"b64": "aGVsbG8="}\nnope\n', "bad_json"),
        ("application/jsonlines", b"\n\n", "empty_body"),
    ],
)
def test_garbage_is_400(tiny_client, content_type, body, kind):
    assert_error(
        tiny_client.post("/invocations", content=body, headers={"Content-Type": content_type}), 400, kind
    )


def test_truncated_jpeg_is_400(tiny_client, images):
    data = images["landscape.jpg"]
    response = tiny_client.post(
        "/invocations", content=data[: len(data) // 2], headers={"Content-Type": "image/jpeg"}
    )
    assert_error(response, 400, "bad_image")


def test_decompression_bomb_is_refused_before_decoding(tiny_model_dir):
    from PIL import Image

    # 4000x4000 of one colour compresses to a few kB; the limit is set below its pixel count.
    bomb = encode(Image.new("RGB", (4000, 4000)), "PNG")
    assert len(bomb) < 100_000
    with serving(tiny_model_dir, max_image_pixels=1_000_000) as client:
        response = client.post("/invocations", content=bomb, headers={"Content-Type": "image/png"})
        body = assert_error(response, 400, "image_too_large")
        assert "4000x4000" in body["error"]


def json_of(images: list[bytes]) -> dict:
    return {"instances": [{"b64": b64(image)} for image in images]}


def test_a_thousand_images_of_40_megapixels_are_refused_before_any_is_decoded(tiny_client):
    """The largest request the other limits let through: 1000 images (the most per request), each just
    under KENNEL_MAX_IMAGE_PIXELS. The default pixel budget refuses it with 413, not the 400 that decoding
    these header-only images would give."""
    image = png_header(6000, 6666)
    response = tiny_client.post("/invocations", json=json_of([image] * 1000))

    body = assert_error(response, 413, "too_many_pixels")
    assert body["limit_pixels"] == 200_000_000
    assert body["setting"] == "KENNEL_MAX_REQUEST_PIXELS"


def test_the_pixel_budget_counts_every_image_of_a_request(tiny_model_dir, images):
    with serving(tiny_model_dir, max_request_pixels=3_000_000) as client:
        within = client.post("/invocations", json=json_of([png_header(1000, 1000)] * 3))
        over = client.post("/invocations", json=json_of([png_header(1000, 1000)] * 3 + [png_header(1, 1)]))
        lines = client.post(
            "/invocations",
            content=b"\n".join(json.dumps({"b64": b64(png_header(1000, 1501))}).encode() for _ in range(2)),
            headers={"Content-Type": "application/jsonlines"},
        )
        real = client.post("/invocations", json=json_of([images["square.jpg"]] * 3))

    assert_error(within, 400, "bad_image")  # within the budget: decoded, and these cannot be
    assert_error(over, 413, "too_many_pixels")
    assert_error(lines, 413, "too_many_pixels")
    assert real.status_code == 200


def test_over_the_limit_is_413_from_content_length(tiny_model_dir, images):
    with serving(tiny_model_dir, max_payload_bytes=MIB) as client:
        response = client.post(
            "/invocations", content=b"\xff" * (MIB + 1), headers={"Content-Type": "image/jpeg"}
        )
        body = assert_error(response, 413, "payload_too_large")
        assert body["limit_bytes"] == MIB
        assert body["setting"] == "SAGEMAKER_MAX_PAYLOAD_IN_MB"
        assert "SAGEMAKER_MAX_PAYLOAD_IN_MB" in body["error"]
        # Exactly at the limit is read (and here it is not an image).
        response = client.post("/invocations", content=b"\xff" * MIB, headers={"Content-Type": "image/jpeg"})
        assert_error(response, 400, "bad_image")


def test_over_the_limit_is_413_while_reading_a_chunked_body(tiny_model_dir):
    def chunks():
        for _ in range(20):
            yield b"\0" * 100_000

    with serving(tiny_model_dir, max_payload_bytes=MIB) as client:
        response = client.post("/invocations", content=chunks(), headers={"Content-Type": "image/jpeg"})
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "payload_too_large")


def test_payload_limit_follows_the_sagemaker_variable():
    from kennel_serve.settings import Settings

    assert Settings.from_env({}).max_payload_bytes == 6 * MIB
    assert Settings.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"}).max_payload_bytes == 100 * MIB


def test_request_id_is_the_inference_id_when_given(tiny_client, images):
    headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Inference-Id": "abc-123"}
    response = tiny_client.post("/invocations", content=images["square.jpg"], headers=headers)
    assert response.headers["x-request-id"] == "abc-123"
    response = tiny_client.post("/invocations", content=b"x", headers={"Content-Type": "text/plain"})
    assert response.json()["request_id"] == response.headers["x-request-id"] != "abc-123"


@pytest.mark.parametrize(
    ("inference_id", "request_id"),
    [
        ("abc-123 <b>" + "x" * 10_000, "abc-123__b_" + "x" * 53),
        ('order#42/"img" 3', "order_42__img__3"),
        ("café-Ω".encode(), "caf__-__"),  # UTF-8 bytes, read as Latin-1 by the server
        ("   ", None),
    ],
)
def test_the_inference_id_is_bounded_not_refused(tiny_client, images, caplog, inference_id, request_id):
    caplog.set_level(logging.INFO, logger="kennel_serve")
    headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Inference-Id": inference_id}

    response = tiny_client.post("/invocations", content=images["square.jpg"], headers=headers)

    assert response.status_code == 200
    echoed = response.headers["x-request-id"]
    (record,) = [r for r in caplog.records if r.getMessage() == "request"]
    assert record.request_id == echoed
    assert 0 < len(echoed) <= 64
    assert set(echoed) <= set(string.ascii_letters + string.digits + "-_.:")
    if request_id is not None:
        assert echoed == request_id


def test_unknown_route_and_method_keep_the_error_shape(tiny_client):
    assert_error(tiny_client.get("/nope"), 404, "not_found")
    assert_error(tiny_client.get("/invocations"), 405, "method_not_allowed")
