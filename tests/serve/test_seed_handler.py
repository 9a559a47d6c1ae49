"""The seed project's own way of serving, in the compatibility build: a handler script written as the seed
wrote its own (seed_inference.py: ResNet-50 with the 2048-128-133 head, model.pth loaded with torch, an
input_fn for image/jpeg, a predict_fn returning the logits tensor, no output_fn) answers a JPEG with the same
1x133 logits as its own functions called directly in PyTorch on the host, so the seed notebook's
`np.argmax(response, 1)` works unchanged; and it does so on the same server as the default image: the same
error bodies, request log lines and metrics.

    KENNEL_TAG=dev .venv/bin/python -m pytest tests/serve/test_seed_handler.py -s   # -s: the difference
"""

import importlib.util
import json
import shutil
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from tests.serve.conftest import assert_error
from tests.serve.test_container import MOUNT, ready

pytestmark = pytest.mark.container
SCRIPT = Path(__file__).with_name("seed_inference.py")
CLASSES = 133
NAMES = ("landscape.jpg", "portrait.jpg", "square.jpg")
# The seed notebook's ImagePredictor: IdentitySerializer("image/jpeg") and JSONDeserializer.
NOTEBOOK_HEADERS = {"Content-Type": "image/jpeg", "Accept": "application/json"}


def seed_script():
    spec = importlib.util.spec_from_file_location("seed_inference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def seed_model_dir(tmp_path_factory) -> Path:
    """model.pth of the seed's network (random weights, fixed seed) and the script as code/inference.py."""
    root = tmp_path_factory.mktemp("seed-handler")
    torch.manual_seed(0)
    torch.save(seed_script().Net().state_dict(), root / "model.pth")
    (root / "code").mkdir()
    shutil.copy(SCRIPT, root / "code" / "inference.py")
    return root


@pytest.fixture(scope="module")
def seed_container(compat_image, docker_client, seed_model_dir):
    container = docker_client.containers.run(
        compat_image,
        ["serve"],
        detach=True,
        name=f"kennel-serve-test-{uuid.uuid4().hex[:8]}",
        volumes={str(seed_model_dir): {"bind": MOUNT, "mode": "ro"}},
        ports={"8080/tcp": ("127.0.0.1", None)},
    )
    try:
        yield container
    finally:
        container.remove(force=True)


def test_the_seed_script_answers_with_its_own_pytorch_logits(seed_container, seed_model_dir, images):
    base = ready(seed_container)
    script = seed_script()
    model = script.model_fn(str(seed_model_dir))
    differences = []
    for name in NAMES:
        data = images[name]
        response = httpx.post(f"{base}/invocations", content=data, headers=NOTEBOOK_HEADERS, timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert "x-kennel-precision" not in response.headers  # the script's model, not one of Kennel's
        expected = script.predict_fn(script.input_fn(data, "image/jpeg"), model).numpy()
        served = np.array(response.json())
        assert served.shape == expected.shape == (1, CLASSES)
        differences.append(float(np.abs(served - expected).max()))
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-4, err_msg=name)
        # The notebook's own client line, on the response as its JSONDeserializer returns it.
        response_from_notebook = json.loads(response.content)
        assert np.argmax(response_from_notebook, 1).tolist() == np.argmax(expected, 1).tolist()
    print(f"\nseed handler: largest logit difference from PyTorch on the host {max(differences):.2e}")


def test_the_seed_script_fails_as_the_default_image_fails(seed_container, images):
    base = ready(seed_container)
    # The seed's input_fn raises a bare Exception for other types: a 500 without its text, which goes to
    # the log with the request id.
    png = httpx.post(
        f"{base}/invocations", content=images["rgba.png"], headers={"Content-Type": "image/png"}, timeout=30
    )
    body = assert_error(png, 500, "internal_error")
    assert "Requested unsupported" not in png.text
    # Its known bug: no RGB conversion, so a grayscale JPEG reaches the model with one channel.
    gray = httpx.post(f"{base}/invocations", content=images["gray.jpg"], headers=NOTEBOOK_HEADERS, timeout=30)
    assert_error(gray, 500, "internal_error")
    # Kennel's own limits hold before any script runs.
    too_big = httpx.post(
        f"{base}/invocations", content=b"\0" * (6 * 1024 * 1024 + 1), headers=NOTEBOOK_HEADERS, timeout=30
    )
    assert_error(too_big, 413, "payload_too_large")

    logs = seed_container.logs().decode()
    assert "Requested unsupported ContentType in content_type: image/png" in logs
    records = [json.loads(text) for text in logs.splitlines() if text.startswith("{")]
    (line,) = [r for r in records if r.get("request_id") == body["request_id"] and r["message"] == "request"]
    assert line["status"] == 500 and line["path"] == "/invocations"
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    assert 'kennel_requests_total{route="/invocations",status="500"} 2.0' in metrics
    assert 'kennel_requests_total{route="/invocations",status="413"} 1.0' in metrics
