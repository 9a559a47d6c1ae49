"""Custom handlers in MODEL_DIR/code/inference.py, written as for the SageMaker inference toolkit."""

import json
import shutil

import numpy as np
import pytest

from tests.serve.conftest import assert_error, png_header, serving

FOUR_FUNCTIONS_WITH_CONTEXT = """
import json
import numpy as np
from sagemaker_inference import content_types, decoder, encoder, errors

def model_fn(model_dir, context):
    return {"scale": 3, "model_dir": model_dir, "seen": context.system_properties["model_dir"]}

def input_fn(input_data, content_type, context):
    if content_type != content_types.JSON:
        raise errors.UnsupportedFormatError(content_type)
    return decoder.decode(input_data, content_type)

def predict_fn(data, model, context):
    if data.size == 0:
        raise errors.GenericInferenceToolkitError(422, "nothing to predict")
    return data * model["scale"]

def output_fn(prediction, accept, context):
    return encoder.encode(prediction, accept), accept
"""

TRANSFORM_ONLY = """
def model_fn(model_dir):
    return "m"

def transform_fn(model, data, content_type, accept):
    return f"{model}|{len(data)}|{content_type}|{accept}"
"""

BROKEN_PREDICT = """
def model_fn(model_dir):
    return None

def input_fn(data, content_type):
    return data

def predict_fn(data, model):
    raise KeyError("secret internals")
"""


def handler_dir(tmp_path, source, base=None):
    if base is not None:
        shutil.copytree(base, tmp_path, dirs_exist_ok=True)
    (tmp_path / "code").mkdir(exist_ok=True)
    (tmp_path / "code" / "inference.py").write_text(source)
    return tmp_path


def test_toolkit_style_handler_with_context(tmp_path):
    with serving(handler_dir(tmp_path, FOUR_FUNCTIONS_WITH_CONTEXT)) as client:
        accept = "application/json;q=0.5, text/csv, */*;q=0.1"
        response = client.post("/invocations", json=[[1, 2], [3, 4]], headers={"Accept": accept})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert np.loadtxt(response.text.splitlines(), delimiter=",").tolist() == [[3, 6], [9, 12]]
        # No Accept: SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, as the toolkit does.
        assert client.post("/invocations", json=[1]).json() == [3]
        # Content-Type parameters are stripped before the handler sees the type.
        response = client.post(
            "/invocations", content=b"[2]", headers={"Content-Type": "Application/JSON; charset=utf-8"}
        )
        assert response.json() == [6]


def test_toolkit_errors_keep_their_status(tmp_path):
    with serving(handler_dir(tmp_path, FOUR_FUNCTIONS_WITH_CONTEXT)) as client:
        body = assert_error(
            client.post("/invocations", content=b"a,b", headers={"Content-Type": "text/csv"}),
            415,
            "unsupported_media_type",
        )
        assert "text/csv is not supported" in body["error"]
        assert_error(client.post("/invocations", json=[]), 422, "handler_error")


def test_transform_fn_replaces_the_other_three(tmp_path):
    with serving(handler_dir(tmp_path, TRANSFORM_ONLY)) as client:
        response = client.post(
            "/invocations", content=b"12345", headers={"Content-Type": "image/jpeg", "Accept": "*/*"}
        )
        assert response.text == "m|5|image/jpeg|application/json"


def test_transform_fn_with_input_fn_is_a_load_error(tmp_path):
    with serving(
        handler_dir(tmp_path, TRANSFORM_ONLY + "\ndef input_fn(data, content_type):\n    return data\n")
    ) as client:
        reason = client.get("/ping").json()["reason"]
        assert "transform_fn and input_fn" in reason


def test_a_handler_that_fails_is_500_without_its_traceback(tmp_path, caplog):
    with serving(handler_dir(tmp_path, BROKEN_PREDICT)) as client:
        response = client.post("/invocations", content=b"x", headers={"Content-Type": "image/jpeg"})
        assert_error(response, 500, "internal_error")
        assert "secret internals" not in response.text
    assert any("secret internals" in r.exc_text for r in caplog.records if r.exc_text)


def test_a_handler_that_does_not_import_is_a_failed_load(tmp_path):
    with serving(handler_dir(tmp_path, "import not_a_module_anywhere\n")) as client:
        response = client.get("/ping")
        assert response.status_code == 503
        assert "not_a_module_anywhere" in response.json()["reason"]


def test_functions_left_out_fall_back_to_the_kennel_model(tmp_path, tiny_model_dir, images):
    source = "def output_fn(prediction, accept):\n    return str(prediction.shape)\n"
    with serving(handler_dir(tmp_path, source, base=tiny_model_dir)) as client:
        body = {"instances": [{"b64": __import__("base64").b64encode(images["square.jpg"]).decode()}] * 2}
        response = client.post("/invocations", json=body)
        assert response.text == "(2, 3)"
        assert_error(
            client.post("/invocations", content=b"junk", headers={"Content-Type": "image/png"}),
            400,
            "bad_image",
        )


def test_the_default_input_fn_keeps_the_pixel_budget(tmp_path, tiny_model_dir):
    source = "def output_fn(prediction, accept):\n    return str(prediction.shape)\n"
    with serving(handler_dir(tmp_path, source, base=tiny_model_dir), max_request_pixels=1_000_000) as client:
        image = {"b64": __import__("base64").b64encode(png_header(1000, 1000)).decode()}
        assert_error(client.post("/invocations", json={"instances": [image] * 2}), 413, "too_many_pixels")


def test_sagemaker_inference_codecs_behave_as_the_toolkit():
    from sagemaker_inference import decoder, encoder, errors

    assert decoder.decode("[[1, 2]]", "application/json").tolist() == [[1, 2]]
    assert decoder.decode("1,2\n3,4", "text/csv").tolist() == [[1, 2], [3, 4]]
    assert json.loads(encoder.encode(np.arange(3), "application/json")) == [0, 1, 2]
    npy = encoder.encode(np.arange(3), "application/x-npy")
    assert decoder.decode(npy, "application/x-npy").tolist() == [0, 1, 2]
    with pytest.raises(errors.UnsupportedFormatError):
        decoder.decode(b"", "application/x-npz")
    # A pickled object array from a client is refused, not unpickled.
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        decoder.decode(buffer.getvalue(), "application/x-npy")


BODY_TYPES = """
def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return type(body).__name__

def predict_fn(data, model):
    return data

def output_fn(prediction, accept):
    return prediction, "text/plain"
"""


def test_json_and_csv_reach_a_script_as_text_as_with_the_toolkit(tmp_path):
    with serving(handler_dir(tmp_path, BODY_TYPES)) as client:
        for content_type, body, kind in [
            ("application/json", b'{"a": "\xc3\xa9"}', "str"),
            ("text/csv; charset=utf-8", b"1,2", "str"),
            ("image/jpeg", b"\xff\xd8", "bytes"),
            ("application/x-npy", b"\x93NUMPY", "bytes"),
        ]:
            response = client.post("/invocations", content=body, headers={"Content-Type": content_type})
            assert (response.status_code, response.text) == (200, kind), content_type
        bad = client.post("/invocations", content=b"[\xff]", headers={"Content-Type": "application/json"})
        assert "must be UTF-8" in assert_error(bad, 400, "bad_json")["error"]
        assert_error(
            client.post("/invocations", content=b"\xff", headers={"Content-Type": "text/csv"}), 400, "bad_csv"
        )
