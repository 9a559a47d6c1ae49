"""torchvision backbones with a replaceable head, and where their pretrained weights come from."""

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from kennel_train.config import TrainConfig

log = logging.getLogger(__name__)


class WeightsError(RuntimeError):
    """Pretrained weights were asked for and none could be found or downloaded."""


def make_head(in_features: int, num_classes: int, head: str, hidden: int) -> nn.Module:
    if head == "mlp":
        # The seed project's head: Linear(2048, 128) -> ReLU -> Linear(128, 133).
        return nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
        )
    return nn.Linear(in_features, num_classes)


def head_attribute(model: nn.Module) -> str:
    """Where the classifier lives: `fc` for ResNets, `classifier` for MobileNets."""
    return "fc" if hasattr(model, "fc") else "classifier"


def build_model(
    backbone: str, num_classes: int, head: str = "linear", hidden: int = 128, state_dict: dict | None = None
) -> nn.Module:
    """The backbone with its ImageNet classifier replaced. `state_dict`, when given, is the backbone's
    ImageNet state (loaded before the head is replaced, so its shapes match)."""
    model = models.get_model(backbone, weights=None)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    if head_attribute(model) == "fc":
        model.fc = make_head(model.fc.in_features, num_classes, head, hidden)
    else:
        last = model.classifier[-1]
        model.classifier[-1] = make_head(last.in_features, num_classes, head, hidden)
    return model


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(getattr(model, head_attribute(model)).parameters())


def pretrained_state(config: TrainConfig) -> dict | None:
    """The backbone's pretrained state_dict, looked for in order: a file given as WEIGHTS, the `pretrained`
    channel, the torch hub cache (TORCH_HOME: the copy baked in at build time, or one mounted by the user),
    then a download."""
    if config.weights == "none":
        return None
    if config.weights != "imagenet":
        return _load(Path(config.weights))
    channel = Path(config.pretrained_dir)
    if channel.is_dir():
        files = sorted(p for p in channel.iterdir() if p.suffix in (".pth", ".pt"))
        candidates = [p for p in files if p.name.startswith(config.backbone)] or files
        if candidates:
            return _load(candidates[0])
    weights = models.get_model_weights(config.backbone).DEFAULT
    try:
        # Uses the hub cache when the file is there, and downloads it otherwise.
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as err:
        raise WeightsError(
            f"cannot get ImageNet weights for {config.backbone} ({weights.url}): {err}. "
            f"Alternatives: put the .pth file in the `pretrained` channel ({channel}); "
            f"build the image with --build-arg PRETRAINED_WEIGHTS={config.backbone}; "
            "mount a torch cache at $TORCH_HOME; pass --weights PATH; "
            "or train from scratch with --weights none"
        ) from err


def _load(path: Path) -> dict:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    log.info("pretrained weights from %s", path)
    return torch.load(path, map_location="cpu", weights_only=True)
