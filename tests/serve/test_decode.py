"""JPEG decoding at reduced scale: decoded sizes, the pixel-budget guard first, other formats untouched,
the served path uses it, and predictions agree with the training image's evaluation on full decodes.

The agreement test runs bench/decode_agreement.py's measurement on 100 photo stand-ins of 2 to 5.6 MP
(about 40 s on 2 cores); docs/benchmarks.md has the same measurement on 12 MP photos too.
"""

from functools import partial

import numpy as np
import pytest
from kennel_serve.codecs import InferenceError, open_image
from kennel_serve.model import ImageClassifier, ModelLoadError, ModelManifest, Preprocessing

from bench import decode_agreement, photos
from kennel_common.model_format import DECODE_MARGIN
from tests.serve.conftest import TINY_LABELS, TINY_PREPROCESSING, encode, serving, write_model_dir

PRE = Preprocessing(256, 224, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def served_probabilities(model_dir, jpeg: bytes) -> np.ndarray:
    """The served model's probabilities for one JPEG, by class index (three classes: top_k=3 is all)."""
    with serving(model_dir) as client:
        headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "top_k=3"}
        (predictions,) = client.post("/invocations", content=jpeg, headers=headers).json()["predictions"]
    return np.array([p["probability"] for p in sorted(predictions, key=lambda p: p["index"])])


@pytest.fixture(scope="module")
def phone_jpeg() -> bytes:
    return photos.jpeg(photos.photo(3, 4032, 3024))


def test_least_decode_size_keeps_the_margin_and_never_exceeds_the_image():
    assert PRE.least_decode_size(4032, 3024) == (683, 512)
    assert PRE.least_decode_size(3024, 4032) == (512, 683)
    assert PRE.least_decode_size(500, 375) == (500, 375)  # already smaller than the margin: as it is
    fixed = Preprocessing((100, 300), None, "bilinear", (0, 0, 0), (1, 1, 1))  # (height, width)
    assert fixed.least_decode_size(3000, 3000) == (600, 600)  # the width needs 2 x 300
    assert PRE.least_decode_size(4032, 3024, margin=1.0) == (342, 256)


def test_a_phone_jpeg_decodes_at_a_quarter_scale_and_other_formats_in_full(phone_jpeg):
    assert open_image(phone_jpeg, 40_000_000, PRE.least_decode_size).size == (1008, 756)
    assert open_image(phone_jpeg, 40_000_000).size == (4032, 3024)  # no caller's size: full decode
    png = encode(photos.photo(3, 1600, 1200), "PNG")
    assert open_image(png, 40_000_000, PRE.least_decode_size).size == (1600, 1200)


def test_the_pixel_budget_refuses_before_any_reduced_decode(phone_jpeg):
    # At a quarter scale the image would have 0.76 MP, under the budget; the guard judges the real size.
    with pytest.raises(InferenceError) as refused:
        open_image(phone_jpeg, 1_000_000, PRE.least_decode_size)
    assert refused.value.kind == "image_too_large" and "4032x3024" in refused.value.message


def test_served_predictions_come_from_the_reduced_decode(tiny_model_dir):
    data = photos.jpeg(photos.photo(5, 1600, 1200))
    classifier = ImageClassifier(tiny_model_dir, threads=2)
    pre = classifier.manifest.preprocessing
    reduced = classifier.predict(pre(open_image(data, 10**9, pre.least_decode_size))[None])[0]
    full = classifier.predict(pre(open_image(data, 10**9))[None])[0]
    assert not np.allclose(reduced, full, atol=1e-6, rtol=0)  # so that the check below can tell them apart
    assert TINY_PREPROCESSING["resize"] * DECODE_MARGIN <= min(
        open_image(data, 10**9, pre.least_decode_size).size
    )
    np.testing.assert_allclose(served_probabilities(tiny_model_dir, data), reduced, atol=1e-6, rtol=0)


def test_reduced_decoding_keeps_top1_within_one_percent_of_the_full_decode():
    model = decode_agreement.make_classifier("resnet18", per_class=16)
    sizes = ((1632, 1224), (1224, 1632), (2048, 1536), (2736, 2052))
    result = decode_agreement.agreement(model, decode_agreement.sample_photos(100, sizes), (DECODE_MARGIN,))
    figures = result["margins"][str(DECODE_MARGIN)]
    # The classifier follows the pictures (every class predicted, well above chance), so a decode that
    # changed what the model sees would change its answers.
    assert result["reference_classes"] == decode_agreement.CLASSES
    assert result["reference_accuracy"] >= 2 / decode_agreement.CLASSES
    assert all(min(size) < 1224 for size in figures["decoded_sizes"])  # every photo took the reduced path
    assert figures["top1_agreement"] >= 0.99, figures


@pytest.mark.parametrize("margin", [None, 1.0])
def test_the_manifest_says_how_jpegs_decode(tmp_path, tiny_model, margin):
    # A resize of 200 on a 1600x1200 photo: margin 2 decodes at 1/2 (800x600), margin 1 at 1/4 (400x300).
    preprocessing = {**TINY_PREPROCESSING, "resize": 200, "jpeg_decode_margin": margin}
    model_dir = write_model_dir(tmp_path, tiny_model, TINY_LABELS, preprocessing, 32)
    data = photos.jpeg(photos.photo(5, 1600, 1200))
    classifier = ImageClassifier(model_dir, threads=2)
    pre = classifier.manifest.preprocessing
    # None: the full decode; 1.0: a smaller one. Either differs from what the default margin would serve.
    least_size = None if margin is None else partial(pre.least_decode_size, margin=margin)
    expected = classifier.predict(pre(open_image(data, 10**9, least_size))[None])[0]
    default = classifier.predict(
        pre(open_image(data, 10**9, partial(pre.least_decode_size, margin=2.0)))[None]
    )
    assert not np.allclose(expected, default[0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(served_probabilities(model_dir, data), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("margin", [0, -1, "two", float("nan")])
def test_a_manifest_decode_margin_that_is_not_a_positive_number_is_refused_at_load(
    tmp_path, tiny_model, margin
):
    preprocessing = {**TINY_PREPROCESSING, "jpeg_decode_margin": margin}
    model_dir = write_model_dir(tmp_path, tiny_model, TINY_LABELS, preprocessing, 32)
    with pytest.raises(ModelLoadError, match="jpeg_decode_margin"):
        ModelManifest.read(model_dir)
