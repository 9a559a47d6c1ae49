"""The one preprocessing description: what the manifest says, read back, and the decode rule."""

import json

import pytest
from kennel_train.config import TrainConfig
from kennel_train.preprocessing import Preprocessing, for_config
from PIL import Image

from bench import photos
from kennel_common.model_format import DECODE_MARGIN


def test_the_manifest_block_says_the_evaluation_and_reads_back_to_it():
    preprocessing = for_config(TrainConfig(image_size=224))
    block = preprocessing.to_manifest()
    assert block == {
        "resize": 256,
        "crop": 224,
        "interpolation": "bilinear",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "jpeg_decode_margin": 2.0,
    }
    assert Preprocessing.from_manifest(json.loads(json.dumps(block))) == preprocessing
    # A manifest written before the decode was recorded reads as the serving image decodes it.
    older = {key: value for key, value in block.items() if key != "jpeg_decode_margin"}
    assert Preprocessing.from_manifest(older).jpeg_decode_margin == DECODE_MARGIN == 2.0
    assert Preprocessing.from_manifest({**block, "jpeg_decode_margin": None}).jpeg_decode_margin is None
    seed = {"resize": [224, 224], "crop": None, "interpolation": "bilinear", "mean": [0] * 3, "std": [1] * 3}
    assert Preprocessing.from_manifest(seed).resize == (224, 224)
    with pytest.raises(ValueError, match=r"interpolation 'nearest' is not one of \['bicubic', 'bilinear'\]"):
        Preprocessing.from_manifest({**block, "interpolation": "nearest"})


def test_the_transform_resizes_the_shorter_side_then_crops_the_centre():
    transform = for_config(TrainConfig(image_size=32, resize=40)).transform()
    image = Image.new("RGB", (100, 50), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 50))  # a blue band on the left, outside the centre crop
    tensor = transform(image)
    assert tuple(tensor.shape) == (3, 32, 32)
    red = (1 - 0.485) / 0.229
    assert tensor[0].min().item() == pytest.approx(red, abs=1e-5)


@pytest.mark.parametrize(
    ("size", "decoded"),
    [((500, 375), (500, 375)), ((1600, 1200), (800, 600)), ((4032, 3024), (1008, 756))],
)
def test_large_jpegs_decode_at_the_reduced_scale_the_margin_allows(tmp_path, size, decoded):
    path = tmp_path / "photo.jpg"
    path.write_bytes(photos.jpeg(photos.photo(1, *size)))
    preprocessing = for_config(TrainConfig())
    assert preprocessing.open(str(path)).size == decoded
    full = Preprocessing(resize=256, crop=224, jpeg_decode_margin=None)
    assert full.open(str(path)).size == size
    png = tmp_path / "photo.png"
    Image.open(path).save(png)
    assert preprocessing.open(str(png)).size == size  # other formats decode in full
    (tmp_path / "broken.jpg").write_bytes(path.read_bytes()[:100])
    assert preprocessing.open(str(tmp_path / "broken.jpg")) is None
