"""Checkpoint round trip, manifest schema, metric regexes against the real log line, the seed converter."""

import json
import re
from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch
from kennel_train import checkpoint, export, metrics
from kennel_train.config import BACKBONES
from kennel_train.convert_seed import ConversionError, convert
from kennel_train.model import build_model
from torch import nn

from kennel_common import model_format

MANIFEST_KEYS = {
    "format", "format_version", "models", "input", "output", "default_response", "labels",
    "preprocessing", "architecture", "metrics", "provenance",
}  # fmt: skip


def assert_model_dir(model_dir: Path, num_classes: int, int8: bool | None = None) -> dict:
    """The contract of docs/model-format.md, shared with the container tests. `int8`: whether the INT8
    model must be there (True), must not (False), or may be (None)."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert set(manifest) >= MANIFEST_KEYS
    assert (manifest["format"], manifest["format_version"]) == ("kennel-model", 2)
    assert manifest["default_response"] in ("top_k", "scores")
    if int8 is not None:
        assert ("int8" in manifest["models"]) == int8, manifest["models"]
    if "int8" in manifest["models"]:
        assert manifest["models"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
        assert set(manifest["quantization"]) >= {"method", "calibration_images", "guarded"}
        assert_onnx_interface(model_dir / "model.int8.onnx", num_classes)
    else:
        assert manifest["models"] == {"fp32": "model.onnx"}
        assert "quantization" not in manifest
    assert manifest["input"] == {"name": "input", "layout": "NCHW", "dtype": "float32"}
    assert manifest["output"] == {"name": "logits", "kind": "logits"}
    assert len(manifest["labels"]) == num_classes == manifest["architecture"]["num_classes"]
    assert set(manifest["preprocessing"]) >= {"resize", "crop", "interpolation", "mean", "std"}
    assert_onnx_interface(model_dir / "model.onnx", num_classes)
    assert_weights_are_the_onnx_network(model_dir, manifest)
    assert json.loads((model_dir / "metric_definitions.json").read_text()) == metrics.metric_definitions()
    return manifest


def assert_weights_are_the_onnx_network(model_dir: Path, manifest: dict) -> None:
    """model.pth loads into the network the manifest's architecture names (strictly: every key and shape),
    and that network computes what model.onnx computes: the weights are there for further fine-tuning."""
    state = torch.load(model_dir / "model.pth", weights_only=True)
    architecture = manifest["architecture"]
    if architecture["backbone"] not in BACKBONES:  # a test's own network: its output width at least
        assert state[list(state)[-1]].shape[0] == architecture["num_classes"]
        return
    net = build_model(
        architecture["backbone"],
        architecture["num_classes"],
        architecture["head"],
        architecture.get("head_hidden", 128),
    )
    net.load_state_dict(state)
    net.eval()
    side = manifest["preprocessing"]["crop"] or manifest["preprocessing"]["resize"][0]
    images = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = net(images).numpy()
    session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"input": images.numpy()})
    assert abs(actual - expected).max() <= 1e-3 * max(1.0, abs(expected).max())


def assert_onnx_interface(path: Path, num_classes: int) -> None:
    """float32 `input` with a dynamic batch axis, `logits` of the class count."""
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value"), "batch axis must be dynamic"
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == num_classes


def test_checkpoint_round_trip_is_atomic(tmp_path):
    net = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 4}
    checkpoint.save_checkpoint(tmp_path, state)
    checkpoint.save_checkpoint(tmp_path, {**state, "epoch": 5})
    loaded = checkpoint.load_checkpoint(tmp_path)
    assert loaded["epoch"] == 5
    assert torch.equal(loaded["model"]["weight"], net.weight)
    restored = torch.optim.AdamW(nn.Linear(3, 2).parameters())
    restored.load_state_dict(loaded["optimizer"])
    assert restored.state_dict()["state"][0]["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.CHECKPOINT_NAME]  # no temporary left
    assert checkpoint.load_checkpoint(tmp_path / "none") is None


def test_metric_definitions_parse_the_log_lines():
    line = (
        metrics.epoch_line(
            2, 5, {"loss": 0.51, "accuracy": 0.8}, {"loss": 0.25, "accuracy": 0.9125}, 1e-4, 321.0
        )
        + "\n"
        + metrics.test_line({"loss": 0.3, "accuracy": 0.875})
    )
    found = {d["Name"]: float(re.search(d["Regex"], line).group(1)) for d in metrics.metric_definitions()}
    assert found["validation:accuracy"] == 0.9125
    assert found["validation:loss"] == 0.25
    assert found["train:loss"] == 0.51
    assert found["train:accuracy"] == 0.8
    assert found["test:accuracy"] == 0.875
    assert found["learning_rate"] == 1e-4


def test_model_dir_export_follows_the_format(tmp_path):
    net = build_model("resnet18", 4)
    manifest = model_format.build_manifest(
        ["a", "b", "c", "d"],
        {"resize": 36, "crop": 32, "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.2] * 3},
        {"backbone": "resnet18", "head": "linear", "num_classes": 4},
        {"val_accuracy": 0.5},
        {"data": "x"},
    )
    stale = tmp_path / export.INT8_FILE  # from an earlier export of other weights
    stale.write_bytes(b"old")
    difference = export.write_model_dir(tmp_path, net, manifest, torch.randn(3, 3, 32, 32))
    assert difference <= export.PARITY_TOLERANCE
    assert not stale.exists()
    written = assert_model_dir(tmp_path, 4)
    assert written["default_response"] == "top_k"
    with pytest.raises(ValueError, match="default_response 'logits' is not one of"):
        model_format.build_manifest(["a"], {}, {}, {}, {}, default_response="logits")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", written["provenance"]["created_at"])


def test_parity_check_catches_a_model_that_differs(tmp_path):
    net = build_model("resnet18", 3).eval()
    export.export_onnx(net, tmp_path / "m.onnx", 32)
    with torch.no_grad():
        net.fc.bias += 1.0 * torch.arange(3)
    with pytest.raises(export.ParityError, match="disagree"):
        export.check_parity(net, tmp_path / "m.onnx", torch.randn(2, 3, 32, 32))


def test_seed_model_converts_to_a_servable_model_dir(seed_model, tmp_path):
    _, weights, model_dir = seed_model
    manifest = assert_model_dir(model_dir, 133)
    assert manifest["architecture"] == {
        "backbone": "resnet50",
        "head": "mlp",
        "head_hidden": 128,
        "num_classes": 133,
    }
    assert manifest["preprocessing"]["mean"] == [0.0, 0.0, 0.0] and manifest["preprocessing"]["crop"] is None
    assert manifest["preprocessing"]["resize"] == [224, 224]
    assert manifest["default_response"] == "scores"  # the seed's endpoint answered with the raw logits
    labels = manifest["labels"]
    with pytest.raises(ConversionError, match="132 labels for a model with 133 outputs"):
        convert(weights, labels[:-1], tmp_path / "bad")
