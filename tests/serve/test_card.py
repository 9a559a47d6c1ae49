"""GET /model and GET /model/report: the manifest and the training report for the page, beside SageMaker's
contract and not part of it; and which model answered, in the custom attributes SageMaker hands back."""

import json
import shutil

from tests.serve.conftest import assert_error, serving


def test_model_answers_the_manifest_as_written_and_which_model_serves(tiny_client, tiny_model_dir):
    response = tiny_client.get("/model")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["manifest"] == json.loads((tiny_model_dir / "manifest.json").read_text())
    assert body["precision"] == "fp32"
    assert body["report"] is None
    assert_error(tiny_client.get("/model/report"), 404, "no_report")


def test_the_report_is_linked_and_served_sandboxed_when_the_model_directory_has_one(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    report = "<!doctype html><title>Training report</title><p>val accuracy 0.81</p>"
    (model_dir / "report.html").write_text(report)
    with serving(model_dir) as client:
        assert client.get("/model").json()["report"] == "model/report"
        response = client.get("/model/report")
    assert response.status_code == 200
    assert response.text == report
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy


def test_a_model_directory_without_a_manifest_is_a_json_404(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    with serving(model_dir) as client:
        (model_dir / "manifest.json").unlink()  # after the load: the route reads the directory as it is now
        assert_error(client.get("/model"), 404, "no_manifest")


def test_the_card_routes_answer_only_get(tiny_client):
    assert_error(tiny_client.post("/model", content=b"{}"), 405, "method_not_allowed")


def test_invocations_name_the_precision_in_the_response_custom_attributes(tiny_client, images):
    response = tiny_client.post(
        "/invocations", content=images["square.jpg"], headers={"Content-Type": "image/jpeg"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-kennel-precision"] == "fp32"
    assert response.headers["x-amzn-sagemaker-custom-attributes"] == "precision=fp32"
