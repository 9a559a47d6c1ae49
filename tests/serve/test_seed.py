"""A seed project model (docs/model-format.md, "Converted seed models") through `convert-seed` and the built
serving image answers like the seed's endpoint: `[[133 logits]]` for a plain JPEG request, so the seed
notebook's `np.argmax(response, 1)` works unchanged.

    KENNEL_TAG=dev .venv/bin/python -m pytest tests/serve/test_seed.py
"""

import base64
import io

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from tests.serve.test_container import ready, start

pytestmark = pytest.mark.container
CLASSES = 133
NAMES = ("landscape.jpg", "portrait.jpg")


def seed_logits(model: torch.nn.Module, data: bytes) -> np.ndarray:
    """The seed endpoint's predict_fn: Resize((224, 224)) and ToTensor (no Normalize); logits, 1x133."""
    transform = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor()])
    tensor = transform(Image.open(io.BytesIO(data)))
    with torch.no_grad():
        return model(tensor.unsqueeze(0)).numpy()


def test_a_converted_seed_model_answers_like_the_seed_endpoint(
    seed_model, serve_image, run_container, images
):
    model, _, model_dir = seed_model
    base = ready(start(run_container, serve_image, model_dir))
    rows = []
    for name in NAMES:
        response = httpx.post(
            f"{base}/invocations", content=images[name], headers={"Content-Type": "image/jpeg"}, timeout=30
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        served, expected = np.array(response.json()), seed_logits(model, images[name])
        assert served.shape == (1, CLASSES)
        # ONNX Runtime and PyTorch run the same float32 network with other kernels and summation orders,
        # which moves logits by about 1e-6 of their size per layer (measured: 3e-6 on logits up to 5);
        # 1e-4 of the largest logit is far above that and far below the gap between the two best classes.
        tolerance = 1e-4 * float(np.abs(expected).max())
        second, first = np.sort(expected[0])[-2:]
        assert first - second > 2 * tolerance, "the two best classes are too close to compare argmax"
        np.testing.assert_allclose(served, expected, rtol=0, atol=tolerance, err_msg=name)
        assert np.argmax(served, 1).tolist() == np.argmax(expected, 1).tolist()
        rows.append(served[0])

    # The seed notebook's predictor sends Accept: application/json; several images answer one row each.
    instances = [{"b64": base64.b64encode(images[name]).decode()} for name in NAMES]
    headers = {"Accept": "application/json"}
    batch = httpx.post(f"{base}/invocations", json={"instances": instances}, headers=headers, timeout=30)
    assert batch.status_code == 200, batch.text
    np.testing.assert_allclose(batch.json(), rows, rtol=0, atol=tolerance)

    # Kennel's top-k answer is one custom attribute away, and agrees with the scores.
    headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "output=top_k"}
    top = httpx.post(f"{base}/invocations", content=images[NAMES[0]], headers=headers, timeout=30)
    (predictions,) = top.json()["predictions"]
    assert predictions[0]["index"] == int(np.argmax(rows[0]))
    assert predictions[0]["label"] == f"{predictions[0]['index'] + 1:03d}.breed_{predictions[0]['index'] + 1}"
