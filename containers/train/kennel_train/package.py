"""The trained network to the model directory (docs/model-format.md): the manifest from the config, the
ONNX export with its parity check on real validation images, then the guarded INT8 model.

    package.write(config, net, splits, results)     # rank 0, after the last evaluation

Everything the manifest says about preprocessing comes from kennel_train.preprocessing, the same
description evaluation ran.
"""

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kennel_common.model_format import build_manifest
from kennel_train import data, export, quantize
from kennel_train.config import TrainConfig
from kennel_train.preprocessing import Preprocessing, for_config

log = logging.getLogger(__name__)


def write(config: TrainConfig, net: nn.Module, splits: data.Splits, results: dict[str, Any]) -> None:
    """Writes the fp32 model directory, then (with `config.quantize`) adds the INT8 model."""
    preprocessing = for_config(config)
    manifest = build_manifest(
        labels=list(splits.classes),
        preprocessing=preprocessing.to_manifest(),
        architecture={
            "backbone": config.backbone,
            "head": config.head,
            "num_classes": len(splits.classes),
            **({"head_hidden": config.head_hidden} if config.head == "mlp" else {}),
        },
        metrics=results,
        provenance={
            "data": config.data,
            "hyperparameters": dataclasses.asdict(config),
            "git_sha": config.git_sha or None,
            "torch": torch.__version__,
            "training_job": config.job_name or None,
        },
    )
    parity_images = parity_batch(splits, preprocessing)
    difference = export.write_model_dir(Path(config.model_dir), net, manifest, parity_images)
    log.info(
        "model written to %s (ONNX parity: max probability difference %.2g)", config.model_dir, difference
    )
    if config.quantize:
        write_int8(config, splits)


def write_int8(config: TrainConfig, splits: data.Splits) -> None:
    """Adds the guarded INT8 model to the model directory. The fp32 model is already complete there, so a
    rejected or failed quantization leaves a job that still succeeds, and the log says why."""
    calibration = quantize.sample_images(splits.train, config.calibration_images, config.seed)
    try:
        result = quantize.quantize_model_dir(
            Path(config.model_dir), calibration, splits.valid, guard=True, seed=config.seed
        )
    except Exception:  # an operator ONNX Runtime cannot quantize must not fail a finished training job
        log.exception("INT8 quantization failed; the model directory holds the fp32 model only")
        return
    if result["written"]:
        log.info(
            "INT8 model written: top-1 agreement with fp32 %.4f, accuracy %.4f fp32 vs %.4f int8 on %d "
            "validation images, calibrated on %d training images",
            result["agreement"], result["fp32_accuracy"], result["int8_accuracy"],
            result["validation_images"], result["calibration_images"],
        )  # fmt: skip
    else:
        log.warning(
            "INT8 model not written, serving will use fp32: the accuracy guard failed: %s", result["reason"]
        )


def parity_batch(splits: data.Splits, preprocessing: Preprocessing) -> torch.Tensor:
    """The first readable validation images, decoded and transformed as evaluation does them."""
    dataset = data.SkippingImageFolder(
        splits.valid, splits.classes, preprocessing.transform(), preprocessing.open
    )
    images = []
    for index in range(len(dataset)):
        item = dataset[index]
        if item is not None:
            images.append(item[0])
        if len(images) == export.PARITY_IMAGES:
            break
    return torch.stack(images)
