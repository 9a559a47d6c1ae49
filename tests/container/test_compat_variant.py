"""The serving image's compatibility build (images.VARIANTS["serve-compat"]): the serving Dockerfile on the
training image with requirements-compat.txt. Its torch and torchvision are the training lock's, one source of
truth, and every pin the two files share agrees; it shares the training image's layers, so it costs only its
own on disk and in a build; and a toolkit-style script answers in it exactly as in the default image.

    KENNEL_TAG=dev .venv/bin/python -m pytest tests/container/test_compat_variant.py
"""

import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_to_end
from tests.serve.test_container import MOUNT, ready
from tests.serve.test_gpu_variant import pins
from tests.serve.test_handler import FOUR_FUNCTIONS_WITH_CONTEXT

pytestmark = pytest.mark.container
ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "containers" / "train" / "requirements.txt"
SERVE = ROOT / "containers" / "serve" / "requirements.txt"
COMPAT = ROOT / "containers" / "serve" / "requirements-compat.txt"


def test_the_compat_lock_agrees_with_the_training_and_serving_locks():
    train, serve, compat = pins(TRAIN), pins(SERVE), pins(COMPAT)
    # torch and torchvision come from the training image, never from a second copy of their pins.
    assert {"torch", "torchvision"} <= set(train)
    assert not {"torch", "torchvision"} & set(compat)
    drift = {
        name: (compat[name], train[name]) for name in set(compat) & set(train) if compat[name] != train[name]
    }
    assert not drift, f"requirements-compat.txt and the training lock disagree (compat, train): {drift}"
    assert {name: compat.get(name) for name in serve} == serve  # the default image's stack, as pinned
    assert "sagemaker-inference" in compat


def test_the_compat_image_has_the_training_locks_torch_and_the_real_toolkit(compat_image, docker_client):
    script = (
        "import importlib.metadata as m, torch, torchvision, sagemaker_inference.transformer;"
        "print(torch.__version__, torchvision.__version__, m.version('sagemaker-inference'),"
        " torch.version.cuda)"
    )
    out = run_to_end(docker_client, compat_image, ["python", "-c", script]).decode().split()
    # The index's CUDA wheels report a local version such as 2.14.1+cu130.
    train = pins(TRAIN)
    assert [out[0].split("+")[0], out[1].split("+")[0]] == [train["torch"], train["torchvision"]]
    assert out[2] == pins(COMPAT)["sagemaker-inference"]
    # The index's CUDA build, as in the training image: with `docker run --gpus all` a script's model can
    # run on the GPU; without one it runs on the CPU (as in every test here).
    assert out[3] != "None"
    # What the two locks put together is one consistent set.
    check = run_to_end(docker_client, compat_image, ["python", "-m", "pip", "check"])
    assert check.decode().strip() == "No broken requirements found."


def test_the_compat_image_is_the_training_image_plus_its_own_layers(build_image, docker_client):
    compat, train = build_image("serve-compat"), build_image("train")
    assert compat.base_image == train.tag
    layers = docker_client.images.get(compat.tag).attrs["RootFS"]["Layers"]
    train_layers = docker_client.images.get(train.tag).attrs["RootFS"]["Layers"]
    assert layers[: len(train_layers)] == train_layers, "the training image's layers are not shared"
    # Its own layers: the serving stack, the toolkit with boto3 and scipy, Kennel's sources (204 MB today).
    assert compat.size_bytes - train.size_bytes <= 300e6, compat.summary()
    config = docker_client.images.get(compat.tag).attrs["Config"]
    assert config["Cmd"] == ["serve"]
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"


REQUESTS = [
    ("application/json", b"[[1, 2], [3, 4]]", "text/csv"),
    ("application/json", b"[1.5]", "application/x-npy"),
    ("application/json", b"[1]", None),
    ("text/csv", b"1,2", "application/json"),  # the script's own UnsupportedFormatError: 415
    ("application/json", b"[]", "application/json"),  # its GenericInferenceToolkitError(422)
    ("application/json", b"[1]", "text/html"),  # no encoder for that Accept: 415 from the encoder
    ("application/json", b'{"a": ', "application/json"),  # refused by the shim, json's error in the toolkit
]


def answer(base: str, content_type: str, body: bytes, accept: str | None) -> tuple:
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    response = httpx.post(f"{base}/invocations", content=body, headers=headers, timeout=30)
    if response.status_code == 200:
        return 200, response.headers["content-type"], response.content
    error = response.json()
    request_id = error.pop("request_id")
    assert request_id == response.headers["x-request-id"]
    return response.status_code, response.headers["content-type"], error


def test_a_toolkit_style_script_answers_alike_in_both_builds(
    serve_image, compat_image, run_container, tmp_path
):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(FOUR_FUNCTIONS_WITH_CONTEXT)
    bases = [
        ready(
            run_container(
                image,
                ["serve"],
                name=f"kennel-serve-test-{uuid.uuid4().hex[:8]}",
                volumes={str(tmp_path): {"bind": MOUNT, "mode": "ro"}},
                ports={"8080/tcp": ("127.0.0.1", None)},
            )
        )
        for image in (serve_image, compat_image)
    ]
    for content_type, body, accept in REQUESTS:
        default, compat = (answer(base, content_type, body, accept) for base in bases)
        if body == b'{"a": ':
            # The one documented difference a script's decoder.decode shows a client (shim: 400, toolkit:
            # json's ValueError, which Kennel answers as any failing script: 500).
            assert (default[0], default[2]["type"]) == (400, "handler_error")
            assert (compat[0], compat[2]["type"]) == (500, "internal_error")
        else:
            assert default == compat, (content_type, body, accept)
