"""Kennel's `sagemaker_inference` shim against the real toolkit: one corpus (toolkit_corpus.py) of payloads
and content types through the decoder and the encoder, errors included, plus the content types and error
classes, run in the default serving image (the shim, as shipped) and in the compatibility build (the toolkit,
sagemaker-inference as pinned in requirements-compat.txt, with no shim beside it). The outcomes are identical
except for the differences that sagemaker_inference/__init__.py documents, and each of those is asserted
as the difference it is.

    KENNEL_TAG=dev .venv/bin/python -m pytest tests/serve/test_toolkit_conformance.py
"""

import json
import re
from pathlib import Path

import pytest

from tests.conftest import run_to_end

pytestmark = pytest.mark.container
HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE.parents[1] / "containers" / "serve" / "requirements-compat.txt"


def corpus_outcomes(docker_client, image: str) -> dict:
    volumes = {str(HERE / "toolkit_corpus.py"): {"bind": "/corpus.py", "mode": "ro"}}
    return json.loads(run_to_end(docker_client, image, ["python", "/corpus.py"], volumes=volumes))


@pytest.fixture(scope="module")
def outcomes(docker_client, serve_image, compat_image) -> tuple[dict, dict]:
    return corpus_outcomes(docker_client, serve_image), corpus_outcomes(docker_client, compat_image)


def refused_json(outcome: dict) -> bool:
    """The shim's answer to JSON its strict reader refuses: a toolkit error that Kennel sends as a 400."""
    return outcome.get("raised") == "GenericInferenceToolkitError" and outcome["args"][0] == "400"


# (section, case) -> what the shim must do there, and what the toolkit does instead.
DIFFERENCES = {
    ("decode", "json truncated"): (refused_json, lambda o: o["raised"] == "JSONDecodeError"),
    ("decode", "json empty body"): (refused_json, lambda o: o["raised"] == "JSONDecodeError"),
    ("decode", "json not utf-8"): (refused_json, lambda o: o["raised"] == "UnicodeDecodeError"),
    ("decode", "json NaN"): (refused_json, lambda o: o["returned"]["items"][1] == 1.0),
    ("decode", "json duplicate key"): (refused_json, lambda o: o["returned"]["items"] == "{'a': 2}"),
    ("decode", "json nested 20 deep"): (refused_json, lambda o: len(o["returned"]["shape"]) == 20),
    ("decode", "npy pickled objects"): (
        lambda o: o["raised"] == "ValueError" and "allow_pickle=False" in o["message"],
        lambda o: o["returned"]["items"] == "[{'a': 1}, None]",  # unpickled: a client's code would run
    ),
    ("decode", "npy not npy"): (
        lambda o: o["raised"] == "ValueError" and "allow_pickle" in o["message"],
        lambda o: o["raised"] == "UnpicklingError",
    ),
    ("decode", "npz sparse"): (
        lambda o: o["raised"] == "UnsupportedFormatError",
        lambda o: o["returned"] == {"type": "csr_matrix", "dense": [[0.0, 5.0, 0.0], [7.0, 0.0, 0.0]]},
    ),
    ("decode", "csv as bytes"): (
        lambda o: o["returned"]["items"] == [[1, 2], [3, 4]],
        lambda o: o["raised"] == "TypeError",
    ),
}


def test_the_toolkit_side_is_the_pinned_toolkit_and_the_shim_side_is_not(outcomes):
    shim, toolkit = outcomes
    pinned = re.search(r"^sagemaker-inference==(\S+)$", REQUIREMENTS.read_text(), re.M)[1]
    assert toolkit["sagemaker-inference"] == pinned
    assert shim["sagemaker-inference"] is None


def test_content_types_encoder_types_and_errors_are_the_toolkits(outcomes):
    shim, toolkit = outcomes
    for key in ("content_types", "encoder.SUPPORTED_CONTENT_TYPES", "errors"):
        assert shim[key] == toolkit[key], key


@pytest.mark.parametrize("section", ["decode", "encode"])
def test_the_corpus_answers_alike_except_the_documented_differences(outcomes, section):
    shim, toolkit = outcomes
    assert shim[section].keys() == toolkit[section].keys()
    for case in shim[section]:
        ours, theirs = shim[section][case], toolkit[section][case]
        if (section, case) in DIFFERENCES:
            ours_ok, theirs_ok = DIFFERENCES[section, case]
            assert ours != theirs, f"{section} {case!r} is documented as a difference but answers alike"
            assert ours_ok(ours), f"shim, {section} {case!r}: {ours}"
            assert theirs_ok(theirs), f"toolkit, {section} {case!r}: {theirs}"
        else:
            assert ours == theirs, f"{section} {case!r}:\n  shim:    {ours}\n  toolkit: {theirs}"


def test_every_documented_difference_is_in_the_corpus(outcomes):
    shim, _ = outcomes
    assert {(section, case) for section, case in DIFFERENCES} <= {
        (section, case) for section in ("decode", "encode") for case in shim[section]
    }
