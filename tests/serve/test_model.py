"""The model module on its own: preprocessing equals torchvision's eval transform, the manifest is read as
docs/model-format.md says, and served probabilities equal PyTorch's within 1e-4."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from kennel_serve.model import ImageClassifier, ModelLoadError, ModelManifest, Preprocessing
from kennel_train.preprocessing import Preprocessing as TrainPreprocessing
from PIL import Image

from tests.serve.conftest import (
    PARITY_PREPROCESSING,
    TINY_LABELS,
    TINY_PREPROCESSING,
    as_decoded,
    serving,
    torch_probabilities,
    write_model_dir,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "docs" / "sample.jpg"  # a real photo; docs/sample.LICENSE.md says where it comes from


@pytest.mark.parametrize(
    "settings",
    [
        {"resize": 256, "crop": 224, "interpolation": "bilinear"},
        {"resize": 73, "crop": 64, "interpolation": "bicubic"},
        {"resize": [50, 90], "crop": None, "interpolation": "bilinear"},
        {"resize": [40, 40], "crop": 48, "interpolation": "bilinear"},  # crop larger than the image: padding
    ],
)
def test_preprocessing_equals_torchvision(images, settings):
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    resize = settings["resize"]
    ours = Preprocessing(
        resize=resize if isinstance(resize, int) else tuple(resize),
        crop=settings["crop"],
        interpolation=settings["interpolation"],
        mean=tuple(mean),
        std=tuple(std),
    )
    # The reference: the training package's evaluation transform (torchvision) for the same manifest block.
    reference = TrainPreprocessing.from_manifest({**settings, "mean": mean, "std": std}).transform()
    for name, data in images.items():
        image = Image.open(io.BytesIO(data))
        expected = reference(image.convert("RGB")).numpy()
        actual = ours(image)
        assert actual.shape == expected.shape, name
        np.testing.assert_allclose(actual, expected, atol=1e-6, err_msg=name)


def test_served_probabilities_equal_pytorch(parity_model_dir, parity_model, images):
    with serving(parity_model_dir) as client:
        for name, data in images.items():
            headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "top_k=5"}
            (predictions,) = client.post("/invocations", content=data, headers=headers).json()["predictions"]
            served = np.array([p["probability"] for p in sorted(predictions, key=lambda p: p["index"])])
            expected = torch_probabilities(parity_model, PARITY_PREPROCESSING, data)
            np.testing.assert_allclose(served, expected, atol=1e-4, err_msg=name)


def test_the_docs_sample_photo_gets_a_prediction(tiny_model_dir, tiny_model):
    for doc in ("containers/serve/README.md", "docs/model-format.md"):
        assert "--data-binary @docs/sample.jpg" in (ROOT / doc).read_text(), doc
    data = SAMPLE.read_bytes()
    with serving(tiny_model_dir) as client:
        headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "top_k=3"}
        response = client.post("/invocations", content=data, headers=headers)
    assert response.status_code == 200, response.text
    (predictions,) = response.json()["predictions"]
    assert sorted(p["label"] for p in predictions) == sorted(TINY_LABELS)
    served = np.array([p["probability"] for p in sorted(predictions, key=lambda p: p["index"])])
    # 512x600 against the tiny model's resize of 40: decoded at reduced scale, as torch gets it here.
    expected = torch_probabilities(tiny_model, TINY_PREPROCESSING, as_decoded(tiny_model_dir, data))
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_a_probabilities_model_is_not_softmaxed_again(tmp_path, images):
    model = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Softmax(dim=1)
    ).eval()
    preprocessing = {"resize": 8, "crop": 8, "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 1, 1]}
    write_model_dir(tmp_path, model, ["r", "g", "b"], preprocessing, 8)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["output"]["kind"] = "probabilities"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    classifier = ImageClassifier(tmp_path, threads=1)
    batch = np.stack([classifier.preprocess(Image.open(io.BytesIO(images["square.jpg"])))])
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(classifier.predict(batch), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format_version=3), "format_version 3; this server reads up to 2"),
        (lambda m: m.update(default_response="csv"), "default_response 'csv' is not one of"),
        (lambda m: m.update(format="other"), "not a kennel-model manifest"),
        (lambda m: m.pop("labels"), "missing or has a malformed field"),
        (lambda m: m["preprocessing"].update(interpolation="nearest"), "interpolation 'nearest'"),
        (lambda m: m.update(labels=["a", "b"]), "3 outputs but the manifest has 2 labels"),
        (lambda m: m["models"].update(fp32="missing.onnx"), "missing.onnx, which is not in"),
    ],
)
def test_bad_model_directories_say_what_is_wrong(tiny_model_dir, tmp_path, change, message):
    manifest = json.loads((tiny_model_dir / "manifest.json").read_text())
    change(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "model.onnx").write_bytes((tiny_model_dir / "model.onnx").read_bytes())
    with pytest.raises(ModelLoadError, match=message.replace("(", r"\(")):
        ImageClassifier(tmp_path, threads=1)


def test_corrupt_onnx_file_is_a_load_error(tiny_model_dir, tmp_path):
    (tmp_path / "manifest.json").write_text((tiny_model_dir / "manifest.json").read_text())
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ModelLoadError, match="ONNX Runtime cannot load"):
        ImageClassifier(tmp_path, threads=1)


def test_unknown_manifest_keys_are_ignored(tiny_model_dir, tmp_path):
    manifest = json.loads((tiny_model_dir / "manifest.json").read_text())
    known = {key: value for key, value in manifest.items() if key != "a_future_key"}
    # Unknown keys at the top and inside a block read the same as none at all.
    future = {**known, "a_future_key": 1, "preprocessing": {**known["preprocessing"], "a_future_step": "x"}}
    for name, document in (("known", known), ("future", future)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(document))

    assert ModelManifest.read(tmp_path / "future") == ModelManifest.read(tmp_path / "known")
