"""KENNEL_PRECISION: the INT8 model is served when the manifest has one, fp32 when asked, and the response
says which in X-Kennel-Precision. The INT8 model is made here by the training package's quantizer."""

import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from kennel_serve.model import ImageClassifier, ModelLoadError
from kennel_serve.settings import Settings, SettingsError
from kennel_train.quantize import quantize_model_dir, sample_images
from kennel_train.synthetic import write_dataset
from PIL import Image

from tests.serve.conftest import TINY_LABELS, serving


@pytest.fixture(scope="module")
def int8_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with an unguarded INT8 model beside it (its weights are random: no guard to pass)."""
    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("int8") / "model"))
    pictures = tmp_path_factory.mktemp("calibration")
    write_dataset(pictures, classes=3, per_class=5, size=40, seed=2)
    for folder, label in zip(sorted((pictures / "valid").iterdir()), TINY_LABELS, strict=True):
        folder.rename(folder.with_name(label))
    result = quantize_model_dir(
        model_dir, sample_images(pictures, 8, seed=0), pictures / "valid", guard=False
    )
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert result["written"] is True and (model_dir / manifest["models"]["int8"]).is_file()
    return model_dir


@pytest.mark.parametrize(("asked", "served"), [("auto", "int8"), ("int8", "int8"), ("fp32", "fp32")])
def test_the_chosen_model_answers_and_the_header_says_which(int8_model_dir, images, caplog, asked, served):
    caplog.set_level(logging.INFO, logger="kennel_serve")
    with serving(int8_model_dir, precision=asked) as client:
        response = client.post(
            "/invocations", content=images["square.jpg"], headers={"Content-Type": "image/jpeg"}
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-kennel-precision"] == served
    (ready,) = [record for record in caplog.records if record.getMessage() == "model ready"]
    assert (ready.precision, ready.requested_precision) == (served, asked)
    manifest = json.loads((int8_model_dir / "manifest.json").read_text())
    assert ready.quantization == manifest["quantization"] and "agreement" in ready.quantization


def test_auto_serves_fp32_when_the_manifest_has_no_int8_model(tiny_model_dir, images):
    with serving(tiny_model_dir) as client:
        response = client.post(
            "/invocations", content=images["gray.jpg"], headers={"Content-Type": "image/jpeg"}
        )
    assert response.headers["x-kennel-precision"] == "fp32"


def test_int8_asked_of_a_model_without_one_fails_the_load_with_the_reason(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="KENNEL_PRECISION=int8, but the manifest has no int8 model"):
        ImageClassifier(tiny_model_dir, threads=1, precision="int8")
    with serving(tiny_model_dir, precision="int8") as client:
        ping = client.get("/ping")
    assert ping.status_code == 503 and "no int8 model" in ping.json()["reason"]


def test_int8_is_really_the_quantized_model(int8_model_dir, images):
    """Its probabilities differ a little from fp32's (quantization rounds), so another file answered."""
    answers = {}
    for precision in ("fp32", "int8"):
        with serving(int8_model_dir, precision=precision) as client:
            headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "top_k=3"}
            (predictions,) = client.post(
                "/invocations", content=images["landscape.jpg"], headers=headers
            ).json()["predictions"]
        answers[precision] = sorted((p["index"], p["probability"]) for p in predictions)
    assert answers["fp32"] != answers["int8"]
    assert [p for p, _ in answers["fp32"]] == [p for p, _ in answers["int8"]]
    for (_, fp32), (_, int8) in zip(answers["fp32"], answers["int8"], strict=True):
        assert int8 == pytest.approx(fp32, abs=0.05)


def test_precision_setting():
    assert Settings.from_env({}).precision == "auto"
    assert Settings.from_env({"KENNEL_PRECISION": "FP32"}).precision == "fp32"
    with pytest.raises(SettingsError, match="KENNEL_PRECISION='fp16' is not one of auto, int8, fp32"):
        Settings.from_env({"KENNEL_PRECISION": "fp16"})


def test_default_workers_are_two_for_an_int8_model_each_sized_for_all_the_cpus(
    int8_model_dir, tiny_model_dir, tmp_path
):
    def settings(model_dir: Path, **environ: str) -> Settings:
        return Settings.from_env({"SM_MODEL_DIR": str(model_dir), "KENNEL_CPUS": "2", **environ})

    int8 = settings(int8_model_dir)
    assert (int8.workers, int8.threads_per_worker) == (2, 2)
    assert settings(int8_model_dir, KENNEL_PRECISION="int8").workers == 2
    # fp32 is twice the memory per copy, one CPU has nothing to share, and a set value is kept and splits
    # the CPUs as before.
    assert settings(int8_model_dir, KENNEL_PRECISION="fp32").workers == 1
    assert settings(tiny_model_dir).workers == 1
    assert settings(int8_model_dir, KENNEL_CPUS="1").workers == 1
    chosen = settings(int8_model_dir, SAGEMAKER_MODEL_SERVER_WORKERS="2")
    assert (chosen.workers, chosen.threads_per_worker) == (2, 1)
    # A custom handler's model is of unknown size; a manifest that cannot be read is reported by one worker.
    handler = Path(shutil.copytree(int8_model_dir, tmp_path / "handler"))
    (handler / "code").mkdir()
    (handler / "code" / "inference.py").write_text("")
    assert settings(handler).workers == 1
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{")
    assert settings(tmp_path / "broken").workers == 1
    (tmp_path / "broken" / "manifest.json").write_text("[]")  # JSON, but not an object
    assert settings(tmp_path / "broken").workers == 1
    assert settings(tmp_path / "absent").workers == 1


def test_serve_help_lists_the_precision_setting(capsys):
    from kennel_serve.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "KENNEL_PRECISION (default auto)" in capsys.readouterr().out


def test_int8_scores_are_the_int8_models_own_logits(int8_model_dir, images):
    """output=scores from the INT8 model: its own float logits, close to fp32's, not fp32's relabelled."""
    rows = {}
    for precision in ("fp32", "int8"):
        with serving(int8_model_dir, precision=precision) as client:
            headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "output=scores"}
            response = client.post("/invocations", content=images["landscape.jpg"], headers=headers)
        assert response.headers["x-kennel-precision"] == precision
        (rows[precision],) = response.json()
    classifier = ImageClassifier(int8_model_dir, threads=1, precision="int8")
    image = Image.open(io.BytesIO(images["landscape.jpg"]))
    (expected,) = classifier.scores(classifier.preprocess(image)[None])
    np.testing.assert_allclose(rows["int8"], expected, rtol=0, atol=1e-6)
    assert rows["int8"] != rows["fp32"]
    # Same scale and the same best class; the values differ by quantization's rounding (this tiny random
    # model, calibrated on 8 images, moves a logit by up to ~0.1).
    assert np.argmax(rows["int8"]) == np.argmax(rows["fp32"])
    np.testing.assert_allclose(rows["int8"], rows["fp32"], rtol=0, atol=0.25)
