"""The one frozen training configuration, and how flags, hyperparameters and defaults combine into it.

Precedence, highest first: command-line flags, hyperparameters (hyperparameters.json or SM_HPS), the
defaults the SageMaker adapter derives from the container (paths, hosts), the defaults below.
"""

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, get_origin, get_type_hints

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_small", "mobilenet_v3_large")

# Names that SageMaker's framework estimators add to every job's hyperparameters; they configure the
# toolkit's script mode, which this image does not use.
SAGEMAKER_RESERVED_PREFIX = "sagemaker_"

# Hyperparameter names other tools use for our fields (the seed's tuning job used these).
ALIASES = {"learning_rate": "lr", "num_epochs": "epochs"}

# The calibration images are held in memory, preprocessed (600 KB each at 224 px); a few hundred are
# plenty for MinMax ranges.
MAX_CALIBRATION_IMAGES = 512
CALIBRATION_IMAGES = 64  # the default, for `train` and `convert-seed`

# What a rule does when it fires (kennel_train/rules.py).
ACTIONS = ("off", "warn", "stop")


class ConfigError(ValueError):
    """A flag or hyperparameter that cannot become a valid configuration."""


def _opt(default: Any, help: str, **metadata: Any) -> Any:
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class TrainConfig:
    # Data and outputs.
    data: str = _opt("/opt/ml/input/data/training", "folder holding train/ valid/ test/ (ImageFolder each)")
    train_dir: str = _opt("", "train split; empty: DATA/train")
    valid_dir: str = _opt("", "validation split; empty: DATA/valid (or DATA/validation)")
    test_dir: str = _opt("", "test split; empty: DATA/test")
    model_dir: str = _opt("/opt/ml/model", "where the model directory is written")
    checkpoint_dir: str = _opt("/opt/ml/checkpoints", "checkpoints, written every epoch and on SIGTERM")
    output_dir: str = _opt(
        "/opt/ml/output",
        "the failure file; data/ gets the report and rules.json, tensorboard/ the TensorBoard scalars",
    )
    resume: bool = _opt(True, "resume from the checkpoint in CHECKPOINT_DIR when one exists")
    skip_if_trained: bool = _opt(
        False, "exit at once, successfully, when MODEL_DIR already holds a model (manifest.json): train once"
    )
    synthetic_if_no_data: bool = _opt(
        False,
        "when DATA has no train/ folder (and TRAIN_DIR is not set), train on a generated synthetic set "
        "(synthetic-data's 5 classes of 40 images, 96 px) in a temporary folder instead of failing",
    )
    # Model.
    backbone: str = _opt("resnet50", "torchvision backbone", choices=BACKBONES)
    weights: str = _opt(
        "imagenet",
        "imagenet: the backbone's default weights (pretrained channel, baked copy, torch cache, download); "
        "none: random initialisation; or a path to a state_dict file",
    )
    pretrained_dir: str = _opt("/opt/ml/input/data/pretrained", "the `pretrained` channel, looked in first")
    head: str = _opt(
        "linear", "classifier head: linear, or mlp (Linear-ReLU-Linear)", choices=("linear", "mlp")
    )
    head_hidden: int = _opt(128, "width of the mlp head's hidden layer")
    freeze_backbone: bool = _opt(False, "train the head only (the seed's recipe); false: full fine-tuning")
    # Optimisation.
    epochs: int = _opt(10, "total epochs, including those done before a resume")
    batch_size: int = _opt(32, "images per batch per process")
    optimizer: str = _opt("adamw", "optimizer", choices=("adamw", "sgd"))
    lr: float = _opt(1e-3, "peak learning rate (per process batch; not scaled with the world size)")
    weight_decay: float = _opt(1e-4, "weight decay")
    momentum: float = _opt(0.9, "SGD momentum")
    warmup_epochs: float = _opt(1.0, "linear warm-up length in epochs, then cosine decay to zero")
    label_smoothing: float = _opt(0.1, "cross-entropy label smoothing")
    clip_grad_norm: float = _opt(0.0, "clip the gradient norm to this value; 0: no clipping")
    amp: str = _opt("auto", "mixed precision: auto (bf16 or fp16 on CUDA, off on CPU), bf16, fp16, off")
    channels_last: str = _opt("auto", "channels_last memory format: auto (on CUDA), on, off")
    seed: int = _opt(0, "random seed (data order, augmentation, head initialisation)")
    # Images.
    image_size: int = _opt(224, "training crop and evaluation centre crop, in pixels")
    resize: int = _opt(0, "evaluation resize of the shorter side; 0: IMAGE_SIZE / 0.875")
    workers: int = _opt(-1, "DataLoader workers per process; -1: from the CPU count")
    # Serving artifact.
    quantize: bool = _opt(
        True,
        "also write model.int8.onnx (ONNX Runtime static INT8, for CPU endpoints), kept only if it passes "
        "the accuracy guard on the validation split: top-1 agreement with fp32 >= 0.99 and accuracy drop "
        "<= 1 point; otherwise the log says why and the job succeeds with fp32 only. false: fp32 only",
    )
    calibration_images: int = _opt(
        CALIBRATION_IMAGES,
        f"training images (a seeded sample, at most {MAX_CALIBRATION_IMAGES}) to calibrate INT8 on",
    )
    # Distribution.
    nproc_per_node: int = _opt(0, "processes per host; 0: one per GPU, or 1 without GPUs")
    hosts: tuple[str, ...] = _opt((), "all hosts, first is master (from resourceconfig.json); comma list")
    current_host: str = _opt("", "this host's name (from resourceconfig.json)")
    master_port: int = _opt(7777, "rendezvous port on the first host")
    # Telemetry and rules (kennel_train/rules.py; README "Telemetry, rules and the report").
    telemetry_every: int = _opt(
        50, "read loss, lr, gradient norms and step times every N steps (0: no step telemetry)"
    )
    system_sample_ms: int = _opt(
        500, "sample CPU, memory and (with NVML) GPU utilisation every N milliseconds (0: off)"
    )
    vanishing_gradient: str = _opt("warn", "the rule's action: off, warn or stop", choices=ACTIONS)
    vanishing_gradient_threshold: float = _opt(
        1e-7, "a trained layer group's RMS gradient below this fires vanishing_gradient"
    )
    exploding_gradient: str = _opt(
        "stop",
        "the rule's action: off, warn or stop; a NaN or infinite loss always fires it",
        choices=ACTIONS,
    )
    exploding_gradient_threshold: float = _opt(
        1e4, "a global gradient norm (unscaled) above this fires exploding_gradient"
    )
    poor_weight_initialization: str = _opt("warn", "the rule's action: off, warn or stop", choices=ACTIONS)
    poor_weight_initialization_threshold: float = _opt(
        50.0,
        "at the first step, the ratio of the largest to the smallest activation std over the layer "
        "groups above this (or a group whose activations are all zero) fires poor_weight_initialization",
    )
    loss_not_decreasing: str = _opt("warn", "the rule's action: off, warn or stop", choices=ACTIONS)
    loss_not_decreasing_epochs: int = _opt(
        3, "epochs in a row whose training loss is not below the best so far fire loss_not_decreasing"
    )
    loss_not_decreasing_min_delta: float = _opt(
        0.001, "relative decrease of the training loss that counts as decreasing"
    )
    overfit: str = _opt("warn", "the rule's action: off, warn or stop", choices=ACTIONS)
    overfit_epochs: int = _opt(
        3,
        "overfit fires when, over this many epochs, the training loss fell and the validation loss rose "
        "(the gap between them widened)",
    )
    overtraining: str = _opt(
        "stop",
        "the rule's action: off, warn or stop; stop is early stopping (the model is always written from "
        "the best validation epoch)",
        choices=ACTIONS,
    )
    overtraining_patience: int = _opt(
        3, "epochs without a better validation accuracy (ties: lower loss) fire overtraining"
    )
    dataloader_bottleneck: str = _opt("warn", "the rule's action: off, warn or stop", choices=ACTIONS)
    dataloader_bottleneck_threshold: float = _opt(
        0.5, "an epoch's share of step time spent waiting for data above this fires dataloader_bottleneck"
    )
    low_gpu_utilization: str = _opt("warn", "the rule's action: off, warn or stop", choices=ACTIONS)
    low_gpu_utilization_threshold: float = _opt(
        50.0, "an epoch's median GPU utilisation (percent) below this on a GPU in use fires the rule"
    )
    # Provenance, recorded in the manifest.
    job_name: str = _opt("", "training job name (TRAINING_JOB_NAME on SageMaker)")
    git_sha: str = _opt("", "source revision to record in the manifest")
    instance_type: str = _opt("", "instance type, for the report's instance-hours (from resourceconfig.json)")

    @property
    def eval_resize(self) -> int:
        return self.resize or round(self.image_size / 0.875)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        values = json.loads(text)
        values["hosts"] = tuple(values["hosts"])
        return cls(**values)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
TYPES = get_type_hints(TrainConfig)


def _field_kind(name: str) -> type:
    hint = TYPES[name]
    return tuple if get_origin(hint) is tuple else hint


def coerce(name: str, value: Any) -> Any:
    """Turns one flag or hyperparameter value into the type of field `name`."""
    kind = _field_kind(name)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if kind is tuple:
            items = value if isinstance(value, list | tuple) else str(value).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        converted = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot use {value!r} as {kind.__name__}") from None
    choices = FIELDS[name].metadata.get("choices")
    if choices and converted not in choices:
        raise ConfigError(f"{name}: {converted!r} is not one of {', '.join(choices)}")
    return converted


def decode_hyperparameters(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """SageMaker's string-to-string hyperparameters, JSON-encoded by the SDK ("\\"resnet18\\"", "0.1") or
    raw from the API ("resnet18", "0.1"), as typed config values. Returns them and the unknown names."""
    values: dict[str, Any] = {}
    unknown = []
    for key, text in raw.items():
        name = key.replace("-", "_")
        name = ALIASES.get(name, name)
        if name.startswith(SAGEMAKER_RESERVED_PREFIX):
            continue
        if name not in FIELDS:
            unknown.append(key)
            continue
        try:
            value = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError:
            value = text
        values[name] = coerce(name, value)
    return values, unknown


def build_parser(prog: str = "train", description: str = "", epilog: str = "") -> argparse.ArgumentParser:
    """One flag per config field; unset flags are absent from the parsed namespace, so they never
    override hyperparameters."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    for name, spec in FIELDS.items():
        default = spec.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        # A yes/no option alone means yes: `--quantize` is `--quantize=true`.
        switch = {"nargs": "?", "const": "true"} if _field_kind(name) is bool else {}
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            metavar=name.upper(),
            type=lambda text, name=name: _parse_flag(name, text),
            help=f"{spec.metadata['help']} (default: {shown!r})",
            **switch,
        )
    return parser


def _parse_flag(name: str, text: str) -> Any:
    try:
        return coerce(name, text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def resolve(
    flags: dict[str, Any], hyperparameters: dict[str, Any], environment: dict[str, Any]
) -> TrainConfig:
    """Flags over hyperparameters over environment-derived defaults over the built-in defaults."""
    values = {**environment, **hyperparameters, **flags}
    config = TrainConfig(**values)
    for name in (
        "epochs",
        "batch_size",
        "image_size",
        "overtraining_patience",
        "overfit_epochs",
        "loss_not_decreasing_epochs",
    ):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(config, name)}")
    for name in ("telemetry_every", "system_sample_ms"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must be 0 or more, got {getattr(config, name)}")
    if not 1 <= config.calibration_images <= MAX_CALIBRATION_IMAGES:
        raise ConfigError(
            f"calibration_images must be 1 to {MAX_CALIBRATION_IMAGES}, got {config.calibration_images}"
        )
    return config
