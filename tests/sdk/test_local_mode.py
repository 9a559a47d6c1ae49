"""The built images driven by SageMaker's Python SDK (v2) in local mode, the way most users start a BYOC job:
an Estimator trains (one instance, then two), a Model is deployed and a Predictor classifies JPEGs, and a
batch transform runs over JPEGs and over JSON Lines.

    KENNEL_TAG=dev .venv/bin/python -m pytest tests/sdk

What the SDK needs from this machine, and how this layer gives it (each is also in docs/sagemaker-sdk.md):
- Its own environment. Every SDK 2.x caps protobuf, packaging and attrs below what the images' locks pin,
  so `scripts/setup.sh sdk` builds .kennel/sdk-venv from requirements-sdk.txt, and the user's side of each
  test (tests/sdk/journey.py) runs there as a subprocess; this side only checks what it wrote.
- Compose v2 under the name it looks for. The SDK runs `docker compose` only if `docker compose version`
  contains "v2"; Debian's build prints "2.26.1-4". Its fallback is a `docker-compose` on PATH:
  scripts/docker-compose (`exec docker compose "$@"`) goes first on the subprocess's PATH.
- A region and (dummy) credentials in the environment; a local transform job needs credentials even
  though nothing reaches AWS. The instance metadata service is switched off so boto3 never probes it.
- Nothing leaves the machine: inputs and outputs are file:// URIs (no S3), and telemetry is opted out in
  the session's SDK defaults.
- A free endpoint port (`local.serving_port`), as 8080 may be taken on a shared machine.
- `transform(..., wait=False, logs=False)`: local mode finishes the job inside transform(); waiting with
  logs tails CloudWatch Logs, which fails offline after the job has run.
- An explicit batch strategy: local mode adopts the container's /execution-parameters answer, spelt as
  SageMaker's batch transform guide spells it (MULTI_RECORD), yet accepts only the API's MultiRecord; and
  its MultiRecord joins records as text, so JPEG files go as SingleRecord.
- Clean-up: local mode leaves its stopped containers and its `sagemaker-local` network behind. Each run
  here removes the containers whose compose project lies under its scratch folder, then the network
  if nothing else is attached.
"""

import base64
import contextlib
import io
import json
import math
import os
import subprocess
import tarfile
from pathlib import Path

import docker
import numpy as np
import pytest
import torch
from kennel_train.model import build_model
from kennel_train.synthetic import write_dataset

from tests.conftest import free_port
from tests.serve.conftest import torch_probabilities

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
SDK_PYTHON = ROOT / ".kennel" / "sdk-venv" / "bin" / "python"
JOURNEY = Path(__file__).with_name("journey.py")
CLASSES = 4
# ResNet-18 from scratch on 48 px images for one epoch, data loaded in the training process: the SDK's
# plumbing is under test, not the model.
HYPERPARAMETERS = {
    "backbone": "resnet18",
    "weights": "none",
    "image_size": 48,
    "batch_size": 8,
    "workers": 0,
    "warmup_epochs": 0,
    "epochs": 1,
    "seed": 1,
    "quantize": False,
}
NETWORK = "sagemaker-local"


@pytest.fixture(scope="module")
def sdk_python() -> Path:
    if not SDK_PYTHON.is_file():
        pytest.fail(f"{SDK_PYTHON} is missing; run `scripts/setup.sh sdk` (make test does)")
    return SDK_PYTHON


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_dataset(root, classes=CLASSES, per_class=10, size=48, seed=7)
    return root


def sdk_environment() -> dict[str, str]:
    """What the SDK sees: no AWS settings of the caller's (a moto endpoint, a profile), only these."""
    return {
        "PATH": f"{ROOT / 'scripts'}:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/root"),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local-mode",
        "AWS_SECRET_ACCESS_KEY": "local-mode",
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
        "PYTHONUNBUFFERED": "1",
        **{name: value for name, value in os.environ.items() if name.startswith("DOCKER_")},
    }


def remove_local_mode_leftovers(client: docker.DockerClient, scratch: Path) -> None:
    for container in client.containers.list(all=True):
        working_dir = container.labels.get("com.docker.compose.project.working_dir", "")
        if working_dir.startswith(f"{scratch}/"):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
    # Another run may still be using the network: then it stays, and that run removes it.
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        network = client.networks.get(NETWORK)
        network.reload()
        if not network.attrs.get("Containers"):
            network.remove()


def run_journey(sdk_python: Path, client, scratch: Path, steps: list[dict]) -> tuple[list[dict], str]:
    """Runs the steps through the SDK in one process; returns each step's result and the SDK's log."""
    (scratch / "sdk").mkdir(parents=True)
    plan = {"root": str(scratch / "sdk"), "port": free_port(), "steps": steps}
    result, log_file = scratch / "result.json", scratch / "sdk.log"
    try:
        with log_file.open("w") as log:
            run = subprocess.run(
                [str(sdk_python), str(JOURNEY), str(result), json.dumps(plan)],
                env=sdk_environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=600,
            )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the SDK did not finish in 600 s\n--- SDK log ---\n{log_file.read_text()[-5000:]}")
    finally:
        remove_local_mode_leftovers(client, scratch / "sdk")
    log = log_file.read_text(errors="replace")
    assert result.is_file(), log[-5000:]
    results = json.loads(result.read_text())
    failed = [step for step in results if "error" in step]
    assert not failed, f"{failed[0]['error']}\n--- SDK log ---\n{log[-5000:]}"
    assert run.returncode == 0, log[-5000:]
    assert [step["step"] for step in results] == [step["step"] for step in steps]
    return results, log


def model_tar(model_data: str) -> dict[str, bytes]:
    assert model_data.startswith("file://"), model_data
    with tarfile.open(model_data.removeprefix("file://")) as tar:
        return {
            member.name.removeprefix("./"): tar.extractfile(member).read()
            for member in tar
            if member.isfile()
        }


def assert_distribution(predictions: list[dict], labels: list[str]) -> None:
    """All classes, each once, most likely first, probabilities that sum to one."""
    assert sorted(p["label"] for p in predictions) == labels
    assert [labels[p["index"]] for p in predictions] == [p["label"] for p in predictions]
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 <= p <= 1 for p in probabilities) and math.isclose(sum(probabilities), 1, abs_tol=1e-4)


@pytest.fixture(scope="module")
def journey(sdk_python, docker_client, build_image, dataset, tmp_path_factory) -> dict:
    """One notebook's worth: train on one instance, deploy and predict, transform JPEGs and JSON Lines."""
    train_image, serve_image = build_image("train").tag, build_image("serve").tag
    scratch = tmp_path_factory.mktemp("journey")
    # Two test images per class; the JSON Lines file holds the same images in the same order.
    chosen = [
        path for label in labels(dataset) for path in sorted((dataset / "test" / label).glob("*.jpg"))[:2]
    ]
    jpegs = scratch / "jpegs"
    jpegs.mkdir()
    for path in chosen:
        (jpegs / path.name).write_bytes(path.read_bytes())
    lines = scratch / "lines"
    lines.mkdir()
    (lines / "images.jsonl").write_text(
        "".join(json.dumps({"b64": base64.b64encode(p.read_bytes()).decode()}) + "\n" for p in chosen)
    )
    steps = [
        {
            "step": "train",
            "image": train_image,
            "instances": 1,
            "data": str(dataset),
            "output": str(scratch / "model"),
            "hyperparameters": HYPERPARAMETERS,
        },
        {
            "step": "predict",
            "image": serve_image,
            "endpoint": "kennel-sdk-test",
            "images": [str(p) for p in chosen],
            "top_k": CLASSES,
        },
        {
            "step": "transform",
            "image": serve_image,
            "input": str(jpegs),
            "output": str(scratch / "jpegs.out"),
            "content_type": "image/jpeg",
            "strategy": "SingleRecord",
            "accept": "application/json",
        },
        {
            "step": "transform",
            "image": serve_image,
            "input": str(lines),
            "output": str(scratch / "lines.out"),
            "content_type": "application/jsonlines",
            "split_type": "Line",
            "strategy": "MultiRecord",
            "accept": "application/jsonlines",
            "assemble_with": "Line",
        },
    ]
    results, log = run_journey(sdk_python, docker_client, scratch, steps)
    named = dict(zip(("train", "predict", "jpegs", "lines"), results, strict=True))
    return {"scratch": scratch, "images": chosen, "log": log, **named}


def labels(dataset: Path) -> list[str]:
    return sorted(path.name for path in (dataset / "train").iterdir())


def top1(predictions: list[dict]) -> str:
    return predictions[0]["label"]


def test_an_estimator_trains_on_one_instance(journey, dataset):
    train = journey["train"]
    assert train["status"] == "Completed" and train["instance_count"] == 1
    files = model_tar(train["model_data"])
    assert {"manifest.json", "model.onnx", "model.pth"} <= set(files)
    # The hyperparameters reached the image as the SDK encodes them (JSON strings): no INT8 model.
    assert "model.int8.onnx" not in files
    manifest = json.loads(files["manifest.json"])
    assert manifest["labels"] == labels(dataset)
    assert manifest["provenance"]["training_job"] == train["job_name"]
    used = manifest["provenance"]["hyperparameters"]
    assert {key: used[key] for key in HYPERPARAMETERS} == HYPERPARAMETERS
    assert len(used["hosts"]) == 1 and used["current_host"] == used["hosts"][0]
    assert "epoch=1/1 " in journey["log"] and "1 process(es) on cpu" in journey["log"]


def test_a_predictor_classifies_jpegs_with_the_deployed_model(journey, dataset):
    predict = journey["predict"]
    assert predict["endpoint_status"] == "InService"
    answers = predict["answers"]
    assert list(answers) == [str(path) for path in journey["images"]]
    # The reference: the trained PyTorch weights from the same archive, on the host.
    files = model_tar(journey["train"]["model_data"])
    manifest = json.loads(files["manifest.json"])
    architecture = manifest["architecture"]
    model = build_model(architecture["backbone"], architecture["num_classes"], architecture["head"])
    model.load_state_dict(torch.load(io.BytesIO(files["model.pth"]), map_location="cpu"))
    for path in journey["images"]:
        (predictions,) = answers[str(path)]["predictions"]
        assert_distribution(predictions, labels(dataset))
        served = np.array([p["probability"] for p in sorted(predictions, key=lambda p: p["index"])])
        expected = torch_probabilities(model, manifest["preprocessing"], path.read_bytes())
        np.testing.assert_allclose(served, expected, atol=1e-4, err_msg=path.name)


def test_a_batch_transform_over_jpegs_writes_one_answer_per_image(journey, dataset):
    assert journey["jpegs"]["status"] == "Completed"
    output = journey["scratch"] / "jpegs.out"
    assert sorted(path.name for path in output.iterdir()) == sorted(
        f"{p.name}.out" for p in journey["images"]
    )
    for path in journey["images"]:
        (predictions,) = json.loads((output / f"{path.name}.out").read_text())["predictions"]
        assert_distribution(predictions, labels(dataset))
        # The endpoint and the transform job run the same model on the same bytes.
        (served,) = journey["predict"]["answers"][str(path)]["predictions"]
        assert [(p["label"], round(p["probability"], 5)) for p in predictions] == [
            (p["label"], round(p["probability"], 5)) for p in served
        ]


def test_a_batch_transform_over_json_lines_answers_line_by_line(journey):
    assert journey["lines"]["status"] == "Completed"
    output = journey["scratch"] / "lines.out"
    assert [path.name for path in output.iterdir()] == ["images.jsonl.out"]
    records = [json.loads(line) for line in (output / "images.jsonl.out").read_text().splitlines() if line]
    assert len(records) == len(journey["images"])
    for record, path in zip(records, journey["images"], strict=True):
        (predictions,) = record["predictions"]
        (served,) = journey["predict"]["answers"][str(path)]["predictions"]
        assert top1(predictions) == top1(served)


def test_an_estimator_trains_on_two_instances_with_ddp(
    sdk_python, docker_client, build_image, dataset, tmp_path
):
    step = {
        "step": "train",
        "image": build_image("train").tag,
        "instances": 2,
        "data": str(dataset),
        "output": str(tmp_path / "model"),
        "hyperparameters": HYPERPARAMETERS,
    }
    ((train,), log) = run_journey(sdk_python, docker_client, tmp_path, [step])
    assert train["status"] == "Completed" and train["instance_count"] == 2
    files = model_tar(train["model_data"])
    assert {"manifest.json", "model.onnx", "model.pth"} <= set(files)
    used = json.loads(files["manifest.json"])["provenance"]["hyperparameters"]
    # algo-1 wrote the model: the SDK's host names, the first one the master.
    assert len(used["hosts"]) == 2 and used["current_host"] == used["hosts"][0]
    assert "2 process(es) on cpu" in log
    # Only the master prints the epoch line; both hosts trained (one process group of two).
    epoch_lines = [line for line in log.splitlines() if "epoch=1/1 " in line]
    assert len(epoch_lines) == 1 and used["hosts"][0] in epoch_lines[0], epoch_lines
