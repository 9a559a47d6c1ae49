"""The training image as SageMaker, EC2 and a multi-host job run it: real containers on CPU, tiny settings.

.venv/bin/python -m pytest tests/train -m container
"""

import json
import re
import time
import uuid
from pathlib import Path

import pytest
import torch
from kennel_train.config import FIELDS
from kennel_train.synthetic import write_dataset
from PIL import Image

from tests.train.test_artifacts import assert_model_dir

pytestmark = pytest.mark.container

CLASSES = 5
# ResNet-18 from scratch on 48 px images: a few seconds per epoch on two CPU cores.
TINY = {"backbone": "resnet18", "weights": "none", "image_size": 48, "batch_size": 8, "warmup_epochs": 0}
TINY_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
EPOCH_LINE = re.compile(r"^epoch=(\d+)/(\d+) .*validation:accuracy=([0-9.]+)", re.M)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_dataset(root, classes=CLASSES, per_class=40, size=48, seed=3)
    return root


def opt_ml(root: Path, dataset: Path, hyperparameters: dict, host: str = "algo-1", hosts=("algo-1",)) -> dict:
    """A /opt/ml tree as SageMaker prepares it; returns the volumes for the container."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": host, "hosts": list(hosts), "network_interface_name": "eth0"})
    )
    (config / "inputdataconfig.json").write_text(json.dumps({"training": {"TrainingInputMode": "File"}}))
    return {
        str(root): {"bind": "/opt/ml", "mode": "rw"},
        str(dataset): {"bind": "/opt/ml/input/data/training", "mode": "ro"},
    }


def sdk_encoded(values: dict) -> dict:
    """How the SageMaker Python SDK writes hyperparameters: every value JSON-encoded into a string."""
    return {key: json.dumps(value) for key, value in values.items()}


def finish(container, timeout: int = 400) -> tuple[int, str]:
    code = container.wait(timeout=timeout)["StatusCode"]
    return code, container.logs().decode(errors="replace")


@pytest.fixture(scope="module")
def sagemaker_job(train_image, docker_client, dataset, tmp_path_factory) -> tuple[Path, str]:
    """One SageMaker-style job, shared by the tests that read its /opt/ml tree: (the tree, the log)."""
    root = tmp_path_factory.mktemp("opt_ml")
    volumes = opt_ml(root, dataset, sdk_encoded({**TINY, "epochs": 3, "seed": 1}))
    container = docker_client.containers.run(
        train_image, ["train"], volumes=volumes, detach=True, name=f"kennel-train-test-{uuid.uuid4().hex[:8]}"
    )
    try:
        code, logs = finish(container)
    finally:
        container.remove(force=True)
    assert code == 0, logs[-3000:]
    return root, logs


def test_sagemaker_job_writes_a_complete_model_dir(sagemaker_job, dataset):
    tmp_path, logs = sagemaker_job
    manifest = assert_model_dir(tmp_path / "model", CLASSES, int8=True)
    assert manifest["labels"] == sorted(p.name for p in (dataset / "train").iterdir())
    # Chance is 1/5; a model that learned nothing stays near it.
    assert manifest["metrics"]["val_accuracy"] >= 0.7, logs[-3000:]
    assert manifest["preprocessing"]["crop"] == 48
    epochs = EPOCH_LINE.findall(logs)
    assert [m[:2] for m in epochs] == [("1", "3"), ("2", "3"), ("3", "3")]
    # The manifest's figures are the best validation epoch's, as the log printed them.
    accuracy = {int(m[0]): float(m[2]) for m in epochs}
    assert accuracy[manifest["metrics"]["best_epoch"]] == max(accuracy.values())
    assert manifest["metrics"]["val_accuracy"] == pytest.approx(max(accuracy.values()), abs=5e-5)
    assert manifest["metrics"]["ended"] == "completed all epochs"
    # The report and rules.json, in the model directory and in what SageMaker uploads as output.tar.gz.
    for folder in (tmp_path / "model", tmp_path / "output" / "data"):
        assert (folder / "report.html").read_text().startswith("<!doctype html>")
        assert (
            json.loads((folder / "rules.json").read_text())["best_epoch"] == manifest["metrics"]["best_epoch"]
        )
    assert "report written to /opt/ml/model/report.html" in logs
    assert list((tmp_path / "output" / "tensorboard").glob("events.out.tfevents.*"))
    test = re.search(r"^test:loss=[0-9.]+ test:accuracy=([0-9.]+)$", logs, re.M)
    assert manifest["metrics"]["test_accuracy"] == pytest.approx(float(test.group(1)), abs=5e-5)
    assert not (tmp_path / "output" / "failure").exists()
    assert (tmp_path / "checkpoints" / "checkpoint.pt").is_file()
    # The INT8 model passed the guard on the validation split, and the manifest says by how much.
    quantization = manifest["quantization"]
    assert quantization["calibration_images"] == 64 and quantization["calibration_seed"] == 1
    assert quantization["validation_images"] == CLASSES * 8
    assert quantization["passed"] and quantization["agreement"] >= 0.99
    assert quantization["fp32_accuracy"] == pytest.approx(manifest["metrics"]["val_accuracy"])
    assert quantization["fp32_accuracy"] - quantization["int8_accuracy"] <= 0.01
    assert "INT8 model written: top-1 agreement with fp32" in logs


def test_a_broken_calibration_fails_the_guard_and_the_job_succeeds_with_fp32(
    sagemaker_job, train_image, run_container, dataset, tmp_path
):
    """The finished job rerun (it resumes after its last epoch, so the same model is exported again) with a
    training split whose images are all one flat grey: calibrated on one of them, INT8 disagrees with fp32."""
    job_root, _ = sagemaker_job
    flat = tmp_path / "flat"
    for name in sorted(p.name for p in (dataset / "train").iterdir()):
        (flat / name).mkdir(parents=True)
        Image.new("RGB", (48, 48), (128, 128, 128)).save(flat / name / "grey.jpg")
    volumes = opt_ml(tmp_path / "opt_ml", dataset, sdk_encoded({**TINY, "epochs": 3, "seed": 1}))
    volumes[str(job_root / "checkpoints")] = {"bind": "/opt/ml/checkpoints", "mode": "ro"}
    volumes[str(flat)] = {"bind": "/opt/ml/input/data/train", "mode": "ro"}
    command = ["train", "--calibration-images=1"]
    code, logs = finish(run_container(train_image, command, volumes=volumes))
    assert code == 0, logs[-3000:]
    assert "at epoch 4/3" in logs and not EPOCH_LINE.search(logs), "the rerun must not train again"
    model_dir = tmp_path / "opt_ml" / "model"
    assert_model_dir(model_dir, CLASSES, int8=False)
    assert not (model_dir / "model.int8.onnx").exists()
    reason = re.search(
        r"INT8 model not written, serving will use fp32: the accuracy guard failed: (.*)", logs
    )
    assert reason, logs[-3000:]
    assert "top-1 agreement with fp32" in reason.group(1) and "on 40 validation images" in reason.group(1)
    assert not (tmp_path / "opt_ml" / "output" / "failure").exists()


def test_flags_only_run_like_ec2(train_image, run_container, dataset, tmp_path):
    volumes = {
        str(dataset): {"bind": "/data", "mode": "ro"},
        str(tmp_path): {"bind": "/out", "mode": "rw"},
    }
    command = ["train", *TINY_FLAGS, "--epochs=2", "--data=/data", "--model-dir=/out/model"]
    command += ["--checkpoint-dir=/out/checkpoints", "--output-dir=/out/output", "--head=mlp"]
    code, logs = finish(run_container(train_image, command, volumes=volumes))
    assert code == 0, logs[-3000:]
    manifest = assert_model_dir(tmp_path / "model", CLASSES)
    assert manifest["architecture"]["head"] == "mlp"
    assert [m[:2] for m in EPOCH_LINE.findall(logs)] == [("1", "2"), ("2", "2")]
    assert manifest["metrics"]["val_accuracy"] >= 0.5, logs[-3000:]


def test_sigterm_mid_epoch_checkpoints_and_the_rerun_resumes(train_image, run_container, dataset, tmp_path):
    volumes = opt_ml(tmp_path, dataset, {**TINY, "epochs": 3})
    first = run_container(train_image, ["train"], volumes=volumes)
    deadline = time.monotonic() + 300
    while "epoch=1/3" not in first.logs().decode() and time.monotonic() < deadline:
        time.sleep(0.2)
    first.kill(signal="SIGTERM")
    code, logs = finish(first)
    assert code == 143, logs[-3000:]
    assert "checkpoint saved" in logs
    saved = torch.load(tmp_path / "checkpoints" / "checkpoint.pt", weights_only=False)
    assert 1 <= saved["epoch"] < 3
    assert not (tmp_path / "model" / "model.onnx").exists()

    code, logs = finish(run_container(train_image, ["train"], volumes=volumes))
    assert code == 0, logs[-3000:]
    assert f"at epoch {saved['epoch'] + 1}/3" in logs
    resumed = EPOCH_LINE.findall(logs)
    assert [int(m[0]) for m in resumed] == list(range(saved["epoch"] + 1, 4))
    metrics = assert_model_dir(tmp_path / "model", CLASSES)["metrics"]
    # The best epoch may be one from before the interruption: the checkpoint kept its weights and figures.
    accuracy = {int(m[0]): float(m[2]) for m in EPOCH_LINE.findall(first.logs().decode()) + resumed}
    assert metrics["val_accuracy"] == pytest.approx(accuracy[metrics["best_epoch"]], abs=5e-5)
    assert accuracy[metrics["best_epoch"]] == max(accuracy.values())


def test_broken_data_fails_with_a_clear_first_line(train_image, run_container, dataset, tmp_path):
    broken = tmp_path / "data"
    for split in ("train", "valid"):  # no test/
        for source in (dataset / split).rglob("*.jpg"):
            target = broken / source.relative_to(dataset)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    volumes = opt_ml(tmp_path / "opt_ml", broken, sdk_encoded(TINY))
    code, logs = finish(run_container(train_image, ["train"], volumes=volumes))
    assert code != 0, logs[-3000:]
    failure = (tmp_path / "opt_ml" / "output" / "failure").read_text()
    assert len(failure) <= 1024
    assert failure.splitlines()[0].startswith("DataError: missing test split"), failure
    assert not (tmp_path / "opt_ml" / "model" / "model.onnx").exists()


def test_two_processes_in_one_container_train_with_gloo(train_image, run_container, dataset, tmp_path):
    volumes = opt_ml(tmp_path, dataset, sdk_encoded({**TINY, "epochs": 2}))
    command = ["train", "--nproc-per-node=2"]
    code, logs = finish(run_container(train_image, command, volumes=volumes))
    assert code == 0, logs[-3000:]
    assert "2 process(es) on cpu" in logs
    manifest = assert_model_dir(tmp_path / "model", CLASSES)
    assert manifest["metrics"]["val_accuracy"] >= 0.4, logs[-3000:]


def test_two_hosts_train_one_model_and_only_algo_1_writes_it(
    train_image, run_container, docker_client, dataset, tmp_path
):
    hosts = ("algo-1", "algo-2")
    network = docker_client.networks.create(f"kennel-train-test-{uuid.uuid4().hex[:12]}", driver="bridge")
    try:
        containers = {}
        for host in hosts:
            volumes = opt_ml(tmp_path / host, dataset, sdk_encoded({**TINY, "epochs": 2}), host, hosts)
            endpoint = docker_client.api.create_endpoint_config(aliases=[host])
            containers[host] = run_container(
                train_image,
                ["train"],
                volumes=volumes,
                hostname=host,
                network=network.name,
                networking_config={network.name: endpoint},
            )
        results = {host: finish(container) for host, container in containers.items()}
    finally:
        for container in containers.values():
            container.remove(force=True)
        network.remove()
    for host, (code, logs) in results.items():
        assert code == 0, f"{host}:\n{logs[-3000:]}"
    assert "2 process(es) on cpu" in results["algo-1"][1]
    assert EPOCH_LINE.search(results["algo-1"][1]) and not EPOCH_LINE.search(results["algo-2"][1])
    assert_model_dir(tmp_path / "algo-1" / "model", CLASSES)
    assert not any((tmp_path / "algo-2" / "model").glob("*"))
    assert not (tmp_path / "algo-2" / "checkpoints" / "checkpoint.pt").exists()


def test_help_lists_every_flag_and_synthetic_data_runs_in_the_image(train_image, docker_client, tmp_path):
    text = docker_client.containers.run(train_image, ["train", "--help"], remove=True).decode()
    # The image's package is this tree's: every option of the config here is a flag there.
    flags = [f"--{name.replace('_', '-')}" for name in FIELDS]
    assert [flag for flag in flags if f"  {flag} " not in text] == []
    assert "(default: 'resnet50')" in text
    volumes = {str(tmp_path): {"bind": "/data", "mode": "rw"}}
    docker_client.containers.run(
        train_image,
        ["synthetic-data", "/data", "--classes", "6", "--per-class", "5"],
        volumes=volumes,
        remove=True,
    )
    assert len(list((tmp_path / "train").iterdir())) == 6
    assert len(list(tmp_path.rglob("*.jpg"))) == 30


def test_missing_pretrained_weights_name_the_alternatives(train_image, run_container, dataset, tmp_path):
    volumes = opt_ml(tmp_path, dataset, {**TINY, "weights": "imagenet"})
    container = run_container(train_image, ["train"], volumes=volumes, network_disabled=True)
    code, logs = finish(container)
    assert code != 0, logs[-3000:]
    first = (tmp_path / "output" / "failure").read_text().splitlines()[0]
    assert first.startswith("WeightsError: cannot get ImageNet weights for resnet18"), first
    for alternative in ("`pretrained` channel", "PRETRAINED_WEIGHTS=resnet18", "--weights none"):
        assert alternative in first
