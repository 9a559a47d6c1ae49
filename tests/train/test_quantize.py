"""The INT8 model and its accuracy guard, on a small CNN trained here on the synthetic set, with the real
ONNX Runtime quantizer."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from kennel_train import export, quantize
from kennel_train.config import ConfigError, resolve
from kennel_train.convert_seed import int8_inputs
from kennel_train.preprocessing import Preprocessing
from kennel_train.synthetic import write_dataset
from PIL import Image
from torch import nn
from torchvision import datasets

from kennel_common.model_format import MEAN, STD, build_manifest
from tests.train.test_artifacts import assert_model_dir

CLASSES = 4
SIZE = 32
PREPROCESSING = {
    "resize": 36,
    "crop": SIZE,
    "interpolation": "bilinear",
    "mean": list(MEAN),
    "std": list(STD),
}


def small_cnn() -> nn.Module:
    def block(inputs: int, outputs: int) -> list[nn.Module]:
        return [nn.Conv2d(inputs, outputs, 3, stride=2, padding=1), nn.BatchNorm2d(outputs), nn.ReLU()]

    return nn.Sequential(
        *block(3, 16),
        *block(16, 32),
        *block(32, 32),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, CLASSES),
    )


def split_tensors(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    split = datasets.ImageFolder(
        str(folder), transform=Preprocessing.from_manifest(PREPROCESSING).transform()
    )
    images, labels = zip(*split, strict=True)
    return torch.stack(images), torch.tensor(labels)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_dataset(root, classes=CLASSES, per_class=30, size=SIZE, seed=4)
    return root


@pytest.fixture(scope="module")
def trained_dir(data, tmp_path_factory) -> Path:
    """A model directory as the training image writes it, for a CNN trained to tell the classes apart."""
    torch.manual_seed(0)
    net = small_cnn()
    images, labels = split_tensors(data / "train")
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(images), labels).backward()
        optimizer.step()
    net.eval()
    valid_images, valid_labels = split_tensors(data / "valid")
    with torch.no_grad():
        accuracy = (net(valid_images).argmax(1) == valid_labels).float().mean().item()
    assert accuracy >= 0.9, "the CNN must have learned the classes for the guard to mean something"
    manifest = build_manifest(
        sorted(p.name for p in (data / "train").iterdir()),
        PREPROCESSING,
        {"backbone": "small_cnn", "head": "linear", "num_classes": CLASSES},
        {"val_accuracy": accuracy},
        {"data": str(data)},
    )
    model_dir = tmp_path_factory.mktemp("trained")
    export.write_model_dir(model_dir, net, manifest, valid_images[:4])
    return model_dir


@pytest.fixture
def model_dir(trained_dir, tmp_path) -> Path:
    """A fresh copy per test, so each one starts from the fp32-only directory."""
    return Path(shutil.copytree(trained_dir, tmp_path / "model"))


@pytest.fixture(scope="module")
def flat_image(tmp_path_factory) -> Path:
    """One flat grey picture: calibrated on it alone, every activation range is wrong for real images."""
    path = tmp_path_factory.mktemp("flat") / "grey.png"
    Image.new("RGB", (SIZE, SIZE), (128, 128, 128)).save(path)
    return path


def run(path: Path, images: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": images})[0]


def test_a_good_calibration_writes_a_guarded_int8_model(model_dir, data):
    calibration = quantize.sample_images(data / "train", 32, seed=0)
    result = quantize.quantize_model_dir(model_dir, calibration, data / "valid", seed=0)
    assert result["written"] and result["reason"] is None, result
    manifest = assert_model_dir(model_dir, CLASSES, int8=True)
    block = manifest["quantization"]
    assert block == {key: value for key, value in result.items() if key not in ("written", "reason")}
    assert block["calibration_images"] == 32 and block["validation_images"] == 4 * 6
    assert block["passed"] and block["guarded"] and block["agreement"] >= 0.99
    assert block["fp32_accuracy"] - block["int8_accuracy"] <= 0.01
    # The figures are what the two files really do on the validation split.
    images, labels = split_tensors(data / "valid")
    fp32 = run(model_dir / "model.onnx", images.numpy()).argmax(1)
    int8 = run(model_dir / "model.int8.onnx", images.numpy()).argmax(1)
    assert block["agreement"] == pytest.approx((fp32 == int8).mean())
    assert block["int8_accuracy"] == pytest.approx((int8 == labels.numpy()).mean())
    # Integer weights, per output channel, inside a QDQ graph with a float32 interface.
    graph = onnx.load(str(model_dir / "model.int8.onnx")).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in graph.node}
    assert any(
        t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 1 and t.dims[0] > 1 for t in graph.initializer
    )
    assert not list(model_dir.glob(".*")), "no staging file is left behind"


def test_a_broken_calibration_fails_the_guard_and_changes_nothing(model_dir, data, flat_image):
    before = {path.name: path.read_bytes() for path in model_dir.iterdir()}
    result = quantize.quantize_model_dir(model_dir, [flat_image], data / "valid")
    assert not result["written"] and not result["passed"], result
    assert result["calibration_images"] == 1
    assert result["agreement"] < 0.99 and "top-1 agreement with fp32" in result["reason"]
    assert {path.name: path.read_bytes() for path in model_dir.iterdir()} == before


def test_without_the_guard_the_int8_model_is_written_with_its_figures(model_dir, data, flat_image):
    result = quantize.quantize_model_dir(model_dir, [flat_image], data / "valid", guard=False, seed=7)
    assert result["written"] and not result["passed"]
    block = assert_model_dir(model_dir, CLASSES, int8=True)["quantization"]
    assert block["guarded"] is False and block["calibration_seed"] == 7


def test_the_guard_needs_a_validation_split(model_dir, data):
    calibration = quantize.sample_images(data / "train", 8, seed=0)
    result = quantize.quantize_model_dir(model_dir, calibration, None)
    assert not result["written"] and "no validation split" in result["reason"]
    assert not (model_dir / "model.int8.onnx").exists()
    written = quantize.quantize_model_dir(model_dir, calibration, None, guard=False)
    assert written["written"] and "agreement" not in written
    assert assert_model_dir(model_dir, CLASSES, int8=True)["quantization"]["calibration_images"] == 8


def test_unreadable_calibration_images_are_an_error(model_dir, data, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    with pytest.raises(quantize.QuantizationError, match="none of the 1 calibration images"):
        quantize.quantize_model_dir(model_dir, [broken], data / "valid")
    assert json.loads((model_dir / "manifest.json").read_text())["models"] == {"fp32": "model.onnx"}


def test_the_calibration_sample_is_seeded_and_bounded(data):
    first = quantize.sample_images(data / "train", 10, seed=1)
    assert first == quantize.sample_images(data / "train", 10, seed=1)
    assert first != quantize.sample_images(data / "train", 10, seed=2)
    assert len(first) == 10 and all(path.suffix == ".jpg" for path in first)
    assert len(quantize.sample_images(data / "train", 10_000, seed=1)) == CLASSES * 18


def test_calibration_images_are_bounded_and_quantize_is_on_by_default():
    assert resolve({}, {}, {}).quantize is True
    assert resolve({}, {"quantize": False}, {}).quantize is False
    for bad in (0, 513):
        with pytest.raises(ConfigError, match="calibration_images must be 1 to 512"):
            resolve({"calibration_images": bad}, {}, {})


def test_convert_seed_guards_with_the_validation_split_of_images(data, tmp_path):
    assert int8_inputs(data) == (data / "train", data / "valid")
    (tmp_path / "loose").mkdir()
    assert int8_inputs(tmp_path / "loose") == (tmp_path / "loose", None)
