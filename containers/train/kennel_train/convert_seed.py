"""`convert-seed`: turns a model from the seed project (Udacity's dog-breed classifier) into a Kennel
model directory, so it can be served without retraining.

    convert-seed model.pth --labels class_names.txt --out /opt/ml/model
    convert-seed model.pth --labels-from dogImages/train --images dogImages --out model/   # + guarded INT8
    docker run -v $PWD:/work kennel-train convert-seed /work/model.pth \
        --labels-from /work/dogImages/train --images /work/dogImages --out /work/model

The seed's network is a ResNet-50 whose `fc` is Linear(2048, 128) -> ReLU -> Linear(128, 133), saved as a
state_dict, fed 224x224 images resized without keeping the aspect ratio and without normalisation; the
manifest says exactly that, so the serving image feeds it what it was trained on. The seed's endpoint
answered with the raw logits, `[[133 floats]]`, and its clients take `np.argmax(response, 1)`: the manifest's
`default_response` is `scores`, so the serving image answers the same way unless a request asks for top_k.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from kennel_common.model_format import build_manifest
from kennel_train import export, quantize
from kennel_train.config import CALIBRATION_IMAGES, MAX_CALIBRATION_IMAGES
from kennel_train.data import SPLIT_NAMES
from kennel_train.model import build_model
from kennel_train.preprocessing import Preprocessing

# The seed's transform: Resize((224, 224)) and ToTensor, no crop, no normalisation.
SEED_PREPROCESSING = Preprocessing(
    resize=(224, 224), crop=None, interpolation="bilinear", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)
)


class ConversionError(ValueError):
    """The input is not a seed model, or the labels do not fit it."""


def read_labels(labels: Path | None, labels_from: Path | None) -> list[str]:
    """A JSON list or a text file with one name per line, or the sorted class folders of an ImageFolder
    split (ImageFolder's index order, which the seed trained with)."""
    if labels_from is not None:
        return sorted(entry.name for entry in labels_from.iterdir() if entry.is_dir())
    text = labels.read_text()
    if text.lstrip().startswith("["):
        return [str(name) for name in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip()]


def seed_images(folder: Path | None) -> torch.Tensor:
    """Up to PARITY_IMAGES real images through the seed's preprocessing, or uniform noise in its [0, 1]
    input range."""
    tensors = []
    if folder is not None:
        transform = SEED_PREPROCESSING.transform()
        for path in sorted(folder.rglob("*"))[:200]:
            image = SEED_PREPROCESSING.open(str(path)) if path.is_file() else None
            if image is not None:
                tensors.append(transform(image))
            if len(tensors) == export.PARITY_IMAGES:
                break
    if not tensors:
        size = (export.PARITY_IMAGES, 3, *SEED_PREPROCESSING.resize)
        return torch.rand(*size, generator=torch.Generator().manual_seed(0))
    return torch.stack(tensors)


def convert(
    weights: Path, labels: list[str], out_dir: Path, images: Path | None = None, backbone: str = "resnet50"
) -> dict:
    """Writes the model directory and returns its manifest."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if "fc.0.weight" not in state or "fc.2.weight" not in state:
        raise ConversionError(f"{weights} is not a seed model: its state_dict has no fc.0/fc.2 head")
    hidden, num_classes = state["fc.0.weight"].shape[0], state["fc.2.weight"].shape[0]
    if len(labels) != num_classes:
        raise ConversionError(f"{len(labels)} labels for a model with {num_classes} outputs")
    model = build_model(backbone, num_classes, head="mlp", hidden=hidden)
    model.load_state_dict(state)
    manifest = build_manifest(
        labels=labels,
        preprocessing=SEED_PREPROCESSING.to_manifest(),
        architecture={"backbone": backbone, "head": "mlp", "head_hidden": hidden, "num_classes": num_classes},
        metrics={},
        provenance={"converted_from": str(weights), "source": "seed project", "torch": torch.__version__},
        default_response="scores",
    )
    export.write_model_dir(out_dir, model, manifest, seed_images(images))
    return manifest


def int8_inputs(images: Path) -> tuple[Path, Path | None]:
    """Where to calibrate and what to guard with: IMAGES/train and IMAGES/valid (or validation, val) when
    IMAGES holds ImageFolder splits, else every image under IMAGES and no guard."""
    valid = next((images / name for name in SPLIT_NAMES["valid"] if (images / name).is_dir()), None)
    train = images / "train"
    return (train if train.is_dir() else images), valid


def add_int8(out_dir: Path, images: Path, count: int, seed: int) -> str:
    """Quantizes the converted model, guarded when IMAGES has a validation split; says what happened."""
    calibration_dir, valid = int8_inputs(images)
    calibration = quantize.sample_images(calibration_dir, count, seed)
    result = quantize.quantize_model_dir(out_dir, calibration, valid, guard=True, seed=seed)
    if result["written"]:
        return (
            f"INT8 model written (top-1 agreement with fp32 {result['agreement']:.4f}, accuracy "
            f"{result['fp32_accuracy']:.4f} fp32 vs {result['int8_accuracy']:.4f} int8 on "
            f"{result['validation_images']} images of {valid})"
        )
    return f"INT8 model not written, the model directory serves fp32: {result['reason']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="convert-seed",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("weights", type=Path, help="the seed's model.pth (a state_dict)")
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument("--labels", type=Path, help="class names in index order: JSON list or one per line")
    names.add_argument(
        "--labels-from", type=Path, help="an ImageFolder split whose sorted folders are the classes"
    )
    parser.add_argument("--out", type=Path, default=Path("/opt/ml/model"), help="model directory to write")
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help="real images for the ONNX parity check and INT8 calibration. A folder with ImageFolder splits "
        "(train/ and valid/, validation/ or val/, as dogImages/ has) also guards the INT8 model: it is "
        "calibrated on train/ and written only if, on the validation split, its top-1 agrees with fp32 "
        "on >= 99%% of images and its accuracy drops by <= 1 point. Without a validation split no INT8 "
        "model is written",
    )
    parser.add_argument(
        "--quantize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the guarded INT8 model (model.int8.onnx) when --images is given",
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=CALIBRATION_IMAGES,
        help="images to calibrate INT8 on: a seeded sample of the training split (or of IMAGES)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    parser.add_argument("--backbone", default="resnet50", help="the seed's backbone")
    args = parser.parse_args(argv)
    if not 1 <= args.calibration_images <= MAX_CALIBRATION_IMAGES:
        parser.error(f"--calibration-images must be 1 to {MAX_CALIBRATION_IMAGES}")
    try:
        manifest = convert(
            args.weights, read_labels(args.labels, args.labels_from), args.out, args.images, args.backbone
        )
        print(f"convert-seed: {len(manifest['labels'])} classes written to {args.out}")
        if args.quantize and args.images is not None:
            print(f"convert-seed: {add_int8(args.out, args.images, args.calibration_images, args.seed)}")
    except (ConversionError, quantize.QuantizationError, OSError) as err:
        print(f"convert-seed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
