"""The rules, the report and the TensorBoard scalars on real runs (host-side, CPU, tiny data and a
ResNet-18): each rule fires on a run built to trigger it and stays silent on a healthy one; early
stopping writes the best epoch; a resumed run keeps the rules' state; the failure file of a stopped run
names the rule. Runs go through `train`'s own entry point."""

import base64
import io
import json
import math
import os
import re
import signal
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnxruntime
import PIL.Image
import pytest
import torch
import torchvision
from kennel_train import cli, data, package, report
from kennel_train.config import TrainConfig
from kennel_train.preprocessing import for_config
from kennel_train.rules import FINDING, RULES, Finding, Rules
from kennel_train.synthetic import write_dataset
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from deploy import follow

TINY = {
    "backbone": "resnet18",
    "weights": "none",
    "image_size": 24,
    "batch_size": 8,
    "warmup_epochs": 0,
    "workers": 0,
    "quantize": "false",
    "telemetry_every": 2,
    "system_sample_ms": 100,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_dataset(root, classes=5, per_class=15, size=24, seed=3)
    return root


@pytest.fixture(scope="module")
def zero_weights(tmp_path_factory) -> Path:
    """A ResNet-18 whose every weight is zero: activations and the backbone's gradients are all zero."""
    path = tmp_path_factory.mktemp("weights") / "zero.pth"
    torch.save({k: torch.zeros_like(v) for k, v in torchvision.models.resnet18().state_dict().items()}, path)
    return path


def train(root: Path, data_dir: Path, **flags) -> int:
    argv = [f"--data={data_dir}", f"--model-dir={root / 'model'}", f"--output-dir={root / 'output'}"]
    argv += [f"--checkpoint-dir={root / 'checkpoints'}"]
    argv += [f"--{key.replace('_', '-')}={value}" for key, value in {**TINY, **flags}.items()]
    return cli.main(argv)


def rules_json(root: Path) -> dict:
    return json.loads((root / "output" / "data" / "rules.json").read_text())


def fired(root: Path) -> set[str]:
    return {finding["rule"] for finding in rules_json(root)["findings"]}


@pytest.fixture
def no_export(monkeypatch):
    """For runs whose model directory is not what the test is about: the ONNX export takes the most time."""
    monkeypatch.setattr(package, "write", lambda *args, **kwargs: None)


@pytest.fixture(scope="module")
def healthy(dataset, tmp_path_factory) -> Path:
    """Four epochs that learn: every rule must stay silent."""
    root = tmp_path_factory.mktemp("healthy")
    assert train(root, dataset, epochs=4, lr=0.003) == 0
    return root


def test_a_healthy_run_fires_no_rule(healthy, capsys):
    summary = rules_json(healthy)
    assert summary["findings"] == [], summary["findings"]
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2, 3, 4]
    assert summary["ended"] == "completed all epochs"
    assert set(summary["rules"]) == set(RULES)
    # Learned something (chance is 0.2), so the silence is about a run that works.
    assert max(e["validation_accuracy"] for e in summary["epochs"]) >= 0.6
    manifest = json.loads((healthy / "model" / "manifest.json").read_text())
    assert manifest["metrics"]["best_epoch"] == summary["best_epoch"]
    assert manifest["metrics"]["ended"] == "completed all epochs"
    assert (healthy / "model" / "rules.json").read_text() == (
        healthy / "output" / "data" / "rules.json"
    ).read_text()


def test_huge_learning_rate_fails_the_job_naming_the_rule_and_its_figures(dataset, tmp_path):
    assert train(tmp_path, dataset, epochs=2, optimizer="sgd", lr=100) == 1
    failure = (tmp_path / "output" / "failure").read_text()
    first = failure.splitlines()[0]
    assert first.startswith("RuleStopped: rule exploding_gradient stopped training"), failure
    finding = rules_json(tmp_path)["findings"][0]
    assert finding["rule"] == "exploding_gradient" and finding["action"] == "stop"
    assert finding["figures"]["grad_norm"] > finding["figures"]["threshold"] == 1e4
    assert f"grad_norm {finding['figures']['grad_norm']:.4g}" in first
    assert not (tmp_path / "model" / "model.onnx").exists()
    report = (tmp_path / "output" / "data" / "report.html").read_text()
    assert "exploding_gradient (stop)" in report


def test_a_nan_loss_fires_exploding_gradient_whatever_the_norm_threshold(dataset, tmp_path, no_export):
    assert (
        train(tmp_path, dataset, epochs=2, optimizer="sgd", lr=1e6, exploding_gradient_threshold=1e300) == 1
    )
    (finding,) = rules_json(tmp_path)["findings"]
    assert finding["rule"] == "exploding_gradient"
    assert finding["figures"]["nonfinite_losses"] >= 1
    # With the action `warn`, the same run is not stopped by it.
    other = tmp_path / "warn"
    code = train(other, dataset, epochs=1, optimizer="sgd", lr=1e6, exploding_gradient="warn")
    assert code == 0 and "exploding_gradient" in fired(other)


def test_a_zero_initialised_network_fires_poor_initialisation_vanishing_gradients_and_a_flat_loss(
    dataset, zero_weights, tmp_path, no_export, capsys
):
    assert train(tmp_path, dataset, epochs=4, weights=zero_weights) == 0
    summary = rules_json(tmp_path)
    found = {f["rule"]: f for f in summary["findings"]}
    assert set(found) == {"poor_weight_initialization", "vanishing_gradient", "loss_not_decreasing"}
    assert found["poor_weight_initialization"]["figures"]["lowest_std"] == 0
    assert found["vanishing_gradient"]["figures"]["grad_rms"] < 1e-7
    assert "stage4" in found["vanishing_gradient"]["figures"]["groups"]
    assert found["loss_not_decreasing"]["epoch"] == 4
    # The findings are log lines in the one parseable form, in the order they came.
    lines = [
        Finding.parse(line) for line in capsys.readouterr().out.splitlines() if line.startswith("finding ")
    ]
    assert [f.rule for f in lines] == [f["rule"] for f in summary["findings"]]
    # The report of a run with findings shows them at the top.
    report = (tmp_path / "output" / "data" / "report.html").read_text()
    top = report[report.index('<section id="summary">') : report.index("</section>")]
    for rule in found:
        assert f"{rule} (warn)" in top
    # Every image is given one class, so the confusion pairs are many and each has its thumbnail.
    assert report.count('alt="a misclassified test image"') == 4


def test_a_dataloader_that_sleeps_fires_the_bottleneck_rule(tmp_path, monkeypatch, no_export):
    """Half a second per training image, against milliseconds of compute on an idle machine: the rule's
    threshold is lowered to a quarter only so that a heavily shared test machine cannot hide it."""
    write_dataset(tmp_path / "data", classes=5, per_class=5, size=24, seed=3)
    read = data.SkippingImageFolder.__getitem__

    def slow(self, index):  # the training split only: a slow disk or a heavy decode
        if Path(self.folder.root).name == "train":
            time.sleep(0.5)
        return read(self, index)

    monkeypatch.setattr(data.SkippingImageFolder, "__getitem__", slow)
    assert train(tmp_path, tmp_path / "data", epochs=1, dataloader_bottleneck_threshold=0.25) == 0
    (finding,) = rules_json(tmp_path)["findings"]
    assert finding["rule"] == "dataloader_bottleneck"
    assert finding["figures"]["data_wait_share"] > 0.25
    assert finding["figures"]["threshold"] == 0.25


def mislabelled_train_split(dataset: Path, root: Path, keep: int) -> Path:
    """`keep` training images per class, each class's images filed under the next class: all the model can
    learn from them makes validation worse while training improves, the signature of overfitting."""
    classes = sorted(p.name for p in (dataset / "train").iterdir())
    for index, name in enumerate(classes):
        target = root / "train" / classes[(index + 1) % len(classes)]
        target.mkdir(parents=True)
        for image in sorted((dataset / "train" / name).iterdir())[:keep]:
            (target / image.name).write_bytes(image.read_bytes())
    for split in ("valid", "test"):
        (root / split).symlink_to(dataset / split)
    return root


def onnx_validation(model_dir: Path, config: TrainConfig, splits_root: Path) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of the exported model.onnx on the validation split."""
    preprocessing = for_config(config)
    classes = tuple(sorted(p.name for p in (splits_root / "valid").iterdir()))
    folder = data.SkippingImageFolder(
        splits_root / "valid", classes, preprocessing.transform(), preprocessing.open
    )
    images, labels = zip(*(folder[i] for i in range(len(folder))), strict=True)
    session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": torch.stack(images).numpy()})
    labels = np.array(labels)
    log_probabilities = torch.log_softmax(torch.from_numpy(logits), dim=1).numpy()
    loss = -log_probabilities[np.arange(len(labels)), labels].mean()
    return float((logits.argmax(1) == labels).mean()), float(loss)


def test_overtraining_stops_early_and_the_model_is_the_best_epochs(dataset, tmp_path):
    splits = mislabelled_train_split(dataset, tmp_path / "data", keep=4)
    flags = {"epochs": 10, "lr": 0.001, "batch_size": 10, "overtraining_patience": 3, "overfit_epochs": 2}
    assert train(tmp_path, splits, **flags) == 0
    summary = rules_json(tmp_path)
    found = {f["rule"]: f for f in summary["findings"]}
    assert {"overfit", "overtraining"} <= set(found)
    assert found["overfit"]["action"] == "warn" and found["overtraining"]["action"] == "stop"
    epochs = {e["epoch"]: e for e in summary["epochs"]}
    best, last = summary["best_epoch"], max(epochs)
    assert last == best + 3 < 10, "stopped after `patience` epochs without improvement"
    assert summary["ended"].startswith("early stopping: overtraining")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["metrics"]["best_epoch"] == best and manifest["metrics"]["epochs_trained"] == last
    assert manifest["metrics"]["ended"] == summary["ended"]
    # What is served is the best epoch's network, not the last one's.
    config = TrainConfig(**{k: v for k, v in TINY.items() if k in ("image_size",)})
    accuracy, loss = onnx_validation(tmp_path / "model", config, splits)
    assert accuracy == pytest.approx(epochs[best]["validation_accuracy"])
    assert loss == pytest.approx(epochs[best]["validation_loss"], rel=1e-4)
    assert loss != pytest.approx(epochs[last]["validation_loss"], rel=1e-3)
    assert manifest["metrics"]["val_accuracy"] == pytest.approx(accuracy)


def test_a_run_resumed_after_sigterm_keeps_the_rules_state(
    dataset, zero_weights, tmp_path, monkeypatch, no_export
):
    """Zero weights and lr 0: validation never improves after epoch 1, so overtraining (patience 2) stops
    the run after epoch 3, but only if the resumed run remembers epoch 1."""
    flags = {"epochs": 8, "weights": zero_weights, "lr": 0.0, "overtraining_patience": 2}
    read = data.SkippingImageFolder.__getitem__
    calls = [0]
    train_images = sum(1 for _ in (dataset / "train").rglob("*.jpg"))
    valid_images = sum(1 for _ in (dataset / "valid").rglob("*.jpg"))

    def interrupted(self, index):  # SIGTERM a few images into epoch 2, as docker stop or a spot reclaim
        calls[0] += 1
        if calls[0] == train_images + valid_images + 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return read(self, index)

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(data.SkippingImageFolder, "__getitem__", interrupted)
    try:
        assert train(tmp_path, dataset, **flags) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    saved = torch.load(tmp_path / "checkpoints" / "checkpoint.pt", weights_only=False)
    assert saved["epoch"] == 1
    monkeypatch.setattr(data.SkippingImageFolder, "__getitem__", read)
    try:
        assert train(tmp_path, dataset, **flags) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = rules_json(tmp_path)
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2, 3]
    assert summary["best_epoch"] == 1
    found = [f["rule"] for f in summary["findings"]]
    # poor_weight_initialization is judged at the first step of the first run only: kept from before.
    assert found[:2] == ["poor_weight_initialization", "vanishing_gradient"]
    assert found[-1] == "overtraining" and summary["findings"][-1]["epoch"] == 3


def test_low_gpu_utilisation_fires_below_its_threshold_only_on_gpus_in_use():
    """No GPU here: the rule is fed the per-GPU medians the sampler would have measured."""
    rules = Rules(TrainConfig())
    at = {"epoch": 1, "step": 10, "seconds": 5.0}
    record = {
        "epoch": 1, "train_loss": 1.0, "validation_loss": 1.0, "validation_accuracy": 0.5,
        "data_wait_share": 0.0,
    }  # fmt: skip
    assert rules.check_epoch(record, {}, at)[1] == []  # no GPU: silent
    assert (
        rules.check_epoch({**record, "epoch": 2, "validation_accuracy": 0.6}, {0: 93.0, 1: 88.0}, at)[1] == []
    )
    _, found = rules.check_epoch({**record, "epoch": 3, "validation_accuracy": 0.7}, {0: 95.0, 1: 12.5}, at)
    assert [(f.rule, f.figures["gpu"], f.figures["median_utilization"]) for f in found] == [
        ("low_gpu_utilization", 1, 12.5)
    ]


def test_a_finding_line_parses_here_and_in_deploy_follow():
    finding = Finding("overfit", "warn", 7, 1400, 812.44, {"gap": 0.31123, "group": "stage1"})
    line = finding.line()
    assert line == "finding rule=overfit action=warn epoch=7 step=1400 seconds=812.4 gap=0.3112 group=stage1"
    assert FINDING.match(line) and follow.FINDING.search(f"[algo-1] {line}")
    assert Finding.parse(line).figures == {"gap": "0.3112", "group": "stage1"}
    # The figures never collide with the metric definitions' names (`lr=`, `images_per_second=`).
    assert not re.search(r" lr=|images_per_second=|:loss=|:accuracy=", line)
    assert math.isnan(
        float(Finding.parse(Finding("x", "stop", 1, 1, 1.0, {"loss": math.nan}).line()).figures["loss"])
    )


class Page(HTMLParser):
    """What a browser would fetch or run: every src, href and script; and the figures' ids."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[str] = []
        self.sources: list[str] = []
        self.other: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        values = dict(attrs)
        if tag == "figure":
            self.figures.append(values["id"])
        if tag == "img":
            self.sources.append(values["src"])
        if tag in ("script", "link", "iframe", "object", "embed") or "href" in values:
            self.other.append((tag, str(values)))


def assert_self_contained(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    assert page.other == []
    assert page.sources and all(src.startswith("data:image/png;base64,") for src in page.sources)
    for src in page.sources:
        image = base64.b64decode(src.split(",", 1)[1])
        assert image.startswith(b"\x89PNG")
        # Its text chunks (matplotlib writes its home page there unless told not to); the compressed pixels
        # are bytes, where "://" turns up by chance in about one report in a hundred.
        texts = PIL.Image.open(io.BytesIO(image)).text
        assert not any("://" in f"{key} {value}" for key, value in texts.items()), texts
    assert not re.search(r"://|www\.|url\(|@import", text, re.I)
    return page


def test_the_report_is_one_self_contained_page_with_every_plot(healthy):
    model_copy = (healthy / "model" / "report.html").read_text()
    assert model_copy == (healthy / "output" / "data" / "report.html").read_text()
    page = assert_self_contained(model_copy)
    assert page.figures == [f"plot-{name}" for name in report.PLOTS if f"plot-{name}" in page.figures]
    assert set(page.figures) == {f"plot-{name}" for name in report.PLOTS}
    summary = model_copy[model_copy.index('<section id="summary">') : model_copy.index("</section>")]
    best = rules_json(healthy)["best_epoch"]
    assert f"{best} (the model directory holds its weights)" in summary
    assert "none: every rule stayed silent" in summary and "host-hours" in summary
    assert "4 of 4 epochs" in summary


def test_tensorboard_reads_the_scalars(healthy):
    events = EventAccumulator(str(healthy / "output" / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    accuracy = events.Scalars("epoch/validation_accuracy")
    epochs = rules_json(healthy)["epochs"]
    assert [e.step for e in accuracy] == [1, 2, 3, 4]
    assert [e.value for e in accuracy] == pytest.approx([e["validation_accuracy"] for e in epochs])
    assert {"step/loss", "step/lr", "step/grad_norm/stage1", "step/data_wait", "system/cpu_percent"} <= set(
        scalars
    )


def test_the_report_summary_counts_instance_hours_and_draws_gpus(healthy):
    """A run as SageMaker would describe it (two ml.g5.xlarge hosts) with GPU samples, drawn from the
    healthy run's own figures."""
    summary = rules_json(healthy)
    details = {
        "config": {**TrainConfig().__dict__, "hosts": ("algo-1", "algo-2"), "instance_type": "ml.g5.xlarge"},
        "classes": ("a", "b"),
        "rules": summary,
        "history": [],
        "system": [
            {
                "seconds": float(t),
                "cpu": bytes([50, 60]),
                "memory": 30.0,
                "gpus": [{"utilization": 90.0, "memory": 40.0}],
            }
            for t in range(10)
        ],
        "gpus_in_use": [0],
        "seconds": 1800.0,
        "test": {"confusion": [[3, 1], [2, 4]], "thumbnails": {}},
    }
    text = report.render(details)
    page = assert_self_contained(text)
    assert set(page.figures) == {f"plot-{name}" for name in report.PLOTS}
    assert "2 x ml.g5.xlarge for 0.50 h = <b>1.00 instance-hours</b>" in text
    assert "<td>b</td><td>a</td><td>2</td>" in text  # the top confusion pair first
