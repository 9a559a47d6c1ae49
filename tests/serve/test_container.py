"""The built serving image, over real HTTP: `docker run IMAGE serve` with a model directory mounted.

Each container is named kennel-serve-test-<random> and removed afterwards.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from tests.conftest import published_port, wait_for_http
from tests.serve.conftest import PARITY_PREPROCESSING, encode, torch_probabilities

pytestmark = pytest.mark.container
MOUNT = "/opt/ml/model"


def start(run_container, image: str, model_dir: Path, port: int = 8080, **environment: str):
    return run_container(
        image,
        ["serve"],
        name=f"kennel-serve-test-{uuid.uuid4().hex[:8]}",
        volumes={str(model_dir): {"bind": MOUNT, "mode": "rw"}},
        environment=environment,
        ports={f"{port}/tcp": ("127.0.0.1", None)},
    )


def url(container, port: int = 8080) -> str:
    return f"http://127.0.0.1:{published_port(container, f'{port}/tcp')}"


def ready(container, port: int = 8080) -> str:
    base = url(container, port)
    wait_for_http(f"{base}/ping", timeout=60, ok=lambda r: r.status_code == 200)
    return base


GATED_HANDLER = """
import time
from pathlib import Path

def model_fn(model_dir):
    # Loading finishes only when the test creates the file, so /ping can be seen before and after.
    while not Path(model_dir, "release").exists():
        time.sleep(0.05)
    return "a model"

def predict_fn(data, model):
    print("predicting", flush=True)
    time.sleep(float(Path("/opt/ml/model/predict_seconds").read_text()))
    return {"model": model, "bytes": len(data)}

def input_fn(body, content_type):
    return body

def output_fn(prediction, accept):
    import json
    return json.dumps(prediction), "application/json"
"""


@pytest.fixture
def gated_model_dir(tmp_path) -> Path:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(GATED_HANDLER)
    (tmp_path / "predict_seconds").write_text("0")
    return tmp_path


@pytest.fixture(scope="module")
def parity_container(serve_image, docker_client, parity_model_dir):
    """One container over the resnet18 model, with a 1 MiB payload limit, shared by the module's tests."""
    container = docker_client.containers.run(
        serve_image,
        ["serve"],
        detach=True,
        name=f"kennel-serve-test-{uuid.uuid4().hex[:8]}",
        volumes={str(parity_model_dir): {"bind": MOUNT, "mode": "ro"}},
        environment={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"},
        ports={"8080/tcp": ("127.0.0.1", None)},
    )
    try:
        yield container
    finally:
        container.remove(force=True)


def test_ping_is_503_while_loading_then_200(serve_image, run_container, gated_model_dir):
    container = start(run_container, serve_image, gated_model_dir)
    loading = wait_for_http(f"{url(container)}/ping", ok=lambda r: r.status_code != 404)
    assert loading.status_code == 503
    assert loading.json() == {"status": "loading", "reason": "the model is loading"}
    (gated_model_dir / "release").touch()
    assert httpx.get(f"{ready(container)}/ping", timeout=10).json() == {"status": "ready"}


def test_sigterm_while_the_model_is_still_loading_exits_0(serve_image, run_container, gated_model_dir):
    container = start(run_container, serve_image, gated_model_dir)
    assert wait_for_http(f"{url(container)}/ping", ok=lambda r: r.status_code != 404).status_code == 503
    container.kill(signal="SIGTERM")
    assert container.wait(timeout=30)["StatusCode"] == 0


def test_failed_load_is_503_with_the_reason(serve_image, run_container, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "kennel-model", "format_version": 99}))
    container = start(run_container, serve_image, tmp_path)
    response = wait_for_http(f"{url(container)}/ping", ok=lambda r: r.json().get("status") == "failed")
    assert response.status_code == 503
    assert "format_version 99" in response.json()["reason"]


def test_served_probabilities_match_pytorch(parity_container, parity_model, images):
    base = ready(parity_container)
    for name, data in images.items():
        response = httpx.post(
            f"{base}/invocations",
            content=data,
            headers={"Content-Type": "application/x-image", "X-Amzn-SageMaker-Custom-Attributes": "top_k=5"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        (predictions,) = response.json()["predictions"]
        served = np.array([p["probability"] for p in sorted(predictions, key=lambda p: p["index"])])
        expected = torch_probabilities(parity_model, PARITY_PREPROCESSING, data)
        np.testing.assert_allclose(served, expected, atol=1e-4, err_msg=name)


def classify(base: str, data: bytes) -> tuple[list[dict], str]:
    headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "top_k=5"}
    response = httpx.post(f"{base}/invocations", content=data, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    (predictions,) = response.json()["predictions"]
    return predictions, response.headers["x-kennel-precision"]


def test_a_model_dir_written_by_the_training_image_serves_pytorch_probabilities(
    trained_model, serve_image, run_container, images
):
    from kennel_train.model import build_model

    model_dir, _ = trained_model
    manifest = json.loads((model_dir / "manifest.json").read_text())
    architecture = manifest["architecture"]
    model = build_model(architecture["backbone"], architecture["num_classes"], architecture["head"])
    model.load_state_dict(torch.load(model_dir / "model.pth", map_location="cpu"))

    from kennel_serve.codecs import open_image
    from kennel_serve.model import ModelManifest

    # PyTorch's probabilities within 1e-4 are the fp32 model's promise; INT8's is the guard's. JPEGs over
    # twice this small model's resize decode at reduced scale: PyTorch gets those pixels, losslessly.
    least_size = ModelManifest.read(model_dir).preprocessing.least_decode_size
    base = ready(start(run_container, serve_image, model_dir, KENNEL_PRECISION="fp32"))
    for name, data in images.items():
        predictions, precision = classify(base, data)
        assert precision == "fp32"
        assert [p["label"] for p in predictions] == [manifest["labels"][p["index"]] for p in predictions]
        served = np.array([p["probability"] for p in sorted(predictions, key=lambda p: p["index"])])
        decoded = encode(open_image(data, 10**9, least_size), "PNG")
        expected = torch_probabilities(model, manifest["preprocessing"], decoded)
        np.testing.assert_allclose(served, expected, atol=1e-4, err_msg=name)


def test_int8_is_served_by_default_fp32_when_asked_and_both_agree_on_the_test_images(
    trained_model, serve_image, run_container
):
    model_dir, data = trained_model
    quantization = json.loads((model_dir / "manifest.json").read_text())["quantization"]
    int8 = start(run_container, serve_image, model_dir)
    fp32 = start(run_container, serve_image, model_dir, KENNEL_PRECISION="fp32")
    bases = {"int8": ready(int8), "fp32": ready(fp32)}
    test_images = sorted((data / "test").rglob("*.jpg"))
    assert len(test_images) == 20
    top1 = {}
    for expected, base in bases.items():
        answers = [classify(base, path.read_bytes()) for path in test_images]
        assert {precision for _, precision in answers} == {expected}
        top1[expected] = [predictions[0]["label"] for predictions, _ in answers]
    assert top1["int8"] == top1["fp32"]
    assert sum(label == path.parent.name for label, path in zip(top1["int8"], test_images, strict=True)) >= 15
    # The choice and the guard's figures are in the start-up log.
    # An INT8 model gets two worker processes by default on two CPUs or more, and each loads its copy.
    lines = [json.loads(text) for text in int8.logs().decode().splitlines() if '"model ready"' in text]
    assert len(lines) == (2 if len(os.sched_getaffinity(0)) >= 2 else 1)
    for line in lines:
        assert line["precision"] == "int8" and line["requested_precision"] == "auto"
        assert line["quantization"] == quantization and line["quantization"]["passed"] is True
    (line,) = [json.loads(text) for text in fp32.logs().decode().splitlines() if '"model ready"' in text]
    assert line["precision"] == "fp32" and line["requested_precision"] == "fp32"


def test_errors_over_real_http(parity_container, images):
    base = ready(parity_container)
    big = httpx.post(
        f"{base}/invocations", content=b"\0" * (1024 * 1024 + 1), headers={"Content-Type": "image/jpeg"}
    )
    assert big.status_code == 413
    assert big.json()["setting"] == "SAGEMAKER_MAX_PAYLOAD_IN_MB" and big.json()["limit_bytes"] == 1024 * 1024
    chunked = httpx.post(
        f"{base}/invocations",
        content=(b"\0" * 65536 for _ in range(20)),
        headers={"Content-Type": "image/jpeg"},
    )
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413 and chunked.json()["type"] == "payload_too_large"
    unsupported = httpx.post(f"{base}/invocations", content=b"a,b", headers={"Content-Type": "text/csv"})
    assert unsupported.status_code == 415 and "image/jpeg" in unsupported.json()["supported"]
    corrupt = httpx.post(
        f"{base}/invocations", content=images["square.jpg"][:300], headers={"Content-Type": "image/jpeg"}
    )
    assert corrupt.status_code == 400 and corrupt.json()["type"] == "bad_image"
    for response in (big, chunked, unsupported, corrupt):
        assert response.json()["request_id"] == response.headers["x-request-id"]
        assert "Traceback" not in response.text


def test_bind_to_port(serve_image, run_container, tiny_model_dir, images):
    container = start(run_container, serve_image, tiny_model_dir, port=9123, SAGEMAKER_BIND_TO_PORT="9123")
    base = ready(container, 9123)
    response = httpx.post(
        f"{base}/invocations", content=images["gray.jpg"], headers={"Content-Type": "image/jpeg"}
    )
    assert response.status_code == 200
    assert len(response.json()["predictions"][0]) == 3


def test_request_in_flight_survives_sigterm_and_the_container_exits_0(
    serve_image, run_container, gated_model_dir
):
    (gated_model_dir / "release").touch()
    (gated_model_dir / "predict_seconds").write_text("3")
    container = start(run_container, serve_image, gated_model_dir)
    base = ready(container)
    result = {}

    def invoke():
        result["response"] = httpx.post(
            f"{base}/invocations", content=b"hello", headers={"Content-Type": "text/plain"}, timeout=30
        )

    thread = threading.Thread(target=invoke)
    thread.start()
    deadline = time.monotonic() + 30
    while b"predicting" not in container.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"predicting" in container.logs(), container.logs().decode()[-2000:]
    container.kill(signal="SIGTERM")
    thread.join(timeout=30)
    assert result["response"].status_code == 200
    assert result["response"].json() == {"model": "a model", "bytes": 5}
    assert container.wait(timeout=30)["StatusCode"] == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/ping", timeout=2)


def test_schemathesis_finds_no_server_error(parity_container):
    base = ready(parity_container)
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    run = subprocess.run(
        [
            st,
            "run",
            f"{base}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--generation-deterministic",
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_hostile_json_in_flight_leaves_ping_and_predictions_answering(
    serve_image, run_container, tiny_model_dir, images
):
    """Four 1 MB bodies of the shape that was quadratic (an unterminated string of escaped quotes) keep
    arriving while /ping and a JPEG are sent: every hostile body is a 400, and both good requests a 200."""
    base = ready(start(run_container, serve_image, tiny_model_dir))
    hostile = b'{"instances": "' + b'\\"' * (1 << 19)
    sending, done = threading.Barrier(5), threading.Event()
    as_json = {"Content-Type": "application/json"}
    refused: list[int] = []

    def attack() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            sending.wait()
            for _ in range(50):  # bounded; ends sooner once the good requests are answered
                answer = client.post("/invocations", content=hostile, headers=as_json)
                refused.append(answer.status_code if answer.json().get("type") == "bad_json" else -1)
                if done.is_set():
                    return

    attackers = [threading.Thread(target=attack) for _ in range(4)]
    for thread in attackers:
        thread.start()
    sending.wait()
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            ping = client.get("/ping")
            jpeg = {"Content-Type": "image/jpeg"}
            prediction = client.post("/invocations", content=images["square.jpg"], headers=jpeg)
            in_flight = not done.is_set() and all(thread.is_alive() for thread in attackers)
    finally:
        done.set()
        for thread in attackers:
            thread.join()
    assert in_flight
    assert ping.status_code == 200
    assert prediction.status_code == 200 and prediction.json()
    assert refused and set(refused) == {400}
