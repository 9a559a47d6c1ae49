"""Training/serving skew: the tensor the training image evaluates on and the one the serving image feeds its
model are the same, within 1e-4, for the same photo file: at the dog-breed set's sizes, and for phone photos
that the serving image decodes at a reduced JPEG scale.

    KENNEL_TAG=dev .venv/bin/python -m pytest tests/container/test_skew.py

Training's side is its validation loader (kennel_train.data.make_loaders), as `evaluate` reads it. Serving's
side is the built kennel-serve image over HTTP, serving a model directory whose manifest the training
package wrote and whose network is the identity: with `output=scores` the answer is the input tensor itself.
About 30 s on 2 cores (the photo stand-ins and the responses of 150,528 floats each dominate).
"""

import io
import json
import uuid
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from kennel_train import data
from kennel_train.config import TrainConfig
from kennel_train.dist import DistContext
from kennel_train.preprocessing import for_config
from onnx import TensorProto, helper
from PIL import Image

from bench import photos
from kennel_common import model_format
from tests.conftest import published_port, wait_for_http

pytestmark = pytest.mark.container
TOLERANCE = 1e-4
CONFIG = TrainConfig(workers=0, batch_size=1)  # the default evaluation: shorter side 256, centre crop 224
# (file name, width, height, format): the seed's photos are about 500x375 JPEGs; phones send 12 MP.
PHOTOS = (
    ("a_seed_landscape.jpg", 500, 375, "JPEG"),
    ("b_seed_portrait.jpg", 375, 500, "JPEG"),
    ("c_camera.jpg", 1600, 1200, "JPEG"),
    ("d_phone_portrait.jpg", 2268, 4032, "JPEG"),
    ("e_phone.jpg", 4032, 3024, "JPEG"),
    ("f_large.png", 1600, 1200, "PNG"),
)
REDUCED = {"c_camera.jpg": (800, 600), "d_phone_portrait.jpg": (567, 1008), "e_phone.jpg": (1008, 756)}


@pytest.fixture(scope="module")
def photo_split(tmp_path_factory) -> Path:
    """An ImageFolder split of photo stand-ins, one class."""
    root = tmp_path_factory.mktemp("photos")
    (root / "dog").mkdir()
    for seed, (name, width, height, kind) in enumerate(PHOTOS):
        picture = photos.photo(seed, width, height)
        if kind == "JPEG":
            (root / "dog" / name).write_bytes(photos.jpeg(picture))
        else:
            picture.save(root / "dog" / name, kind)
    return root


@pytest.fixture(scope="module")
def evaluated(photo_split) -> dict[str, np.ndarray]:
    """Each photo's tensor as training's validation loader yields it."""
    splits = data.Splits(photo_split, photo_split, photo_split, ("dog",))
    loader = data.make_loaders(CONFIG, DistContext.single(), splits)["valid"]
    tensors = [images[0].numpy() for images, _, _ in loader]
    return {name: tensor for (name, *_), tensor in zip(PHOTOS, tensors, strict=True)}


def identity_model_dir(folder: Path, config: TrainConfig) -> Path:
    """A model directory whose network returns its input, flattened; its manifest as training writes it."""
    side = config.image_size
    size = 3 * side * side
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["logits"], axis=1)],
        "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save(model, folder / "model.onnx")
    manifest = model_format.build_manifest(
        labels=[f"x{i}" for i in range(size)],
        preprocessing=for_config(config).to_manifest(),
        architecture={"backbone": "identity", "head": "none", "num_classes": size},
        metrics={},
        provenance={},
        default_response="scores",
    )
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def served(serve_image, docker_client, photo_split, tmp_path_factory) -> dict[str, np.ndarray]:
    """Each photo file's tensor as the serving image feeds it to its model."""
    model_dir = identity_model_dir(tmp_path_factory.mktemp("identity"), CONFIG)
    container = docker_client.containers.run(
        serve_image,
        ["serve"],
        detach=True,
        name=f"kennel-skew-test-{uuid.uuid4().hex[:8]}",
        volumes={str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}},
        ports={"8080/tcp": ("127.0.0.1", None)},
    )
    try:
        base = f"http://127.0.0.1:{published_port(container)}"
        wait_for_http(f"{base}/ping", ok=lambda r: r.status_code == 200)
        tensors = {}
        for name, *_ in PHOTOS:
            response = httpx.post(
                f"{base}/invocations",
                content=(photo_split / "dog" / name).read_bytes(),
                headers={"Content-Type": "application/x-image"},
                timeout=60,
            )
            assert response.status_code == 200, response.text[:500]
            (row,) = response.json()
            size = CONFIG.image_size
            tensors[name] = np.asarray(row, dtype=np.float32).reshape(3, size, size)
    finally:
        container.remove(force=True)
    return tensors


@pytest.mark.parametrize("name", [name for name, *_ in PHOTOS])
def test_training_evaluates_exactly_what_the_serving_image_feeds_its_model(evaluated, served, name):
    difference = float(np.abs(evaluated[name] - served[name]).max())
    assert difference <= TOLERANCE, f"{name}: max |train - serve| = {difference:.3g}"


def test_large_jpegs_decode_reduced_on_both_sides_and_that_is_what_agreement_needs(evaluated, photo_split):
    """Training's decode follows the rule the serving image applies; evaluating a full decode instead would
    not agree, so the test above would catch a training side that ignored the rule."""
    preprocessing = for_config(CONFIG)
    full_transform = preprocessing.transform()
    for name, width, height, _ in PHOTOS:
        path = photo_split / "dog" / name
        decoded = preprocessing.open(str(path))
        assert decoded.size == REDUCED.get(name, (width, height)), name
        if name in REDUCED:
            with Image.open(io.BytesIO(path.read_bytes())) as image:
                full = full_transform(image.convert("RGB")).numpy()
            assert np.abs(full - evaluated[name]).max() > 10 * TOLERANCE, name
