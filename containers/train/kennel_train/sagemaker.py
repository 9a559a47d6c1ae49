"""The SageMaker adapter: the only code that knows /opt/ml and the SM_* variables.

It reads the container contract (hyperparameters.json, resourceconfig.json, inputdataconfig.json, the
channels under /opt/ml/input/data, checkpointconfig.json and the toolkit's SM_* variables when set) and turns
it, together with the command-line flags, into one frozen TrainConfig. Without an /opt/ml tree (EC2, a
laptop) the same defaults point at the usual mount points and flags do the rest.
"""

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kennel_train.config import TrainConfig, decode_hyperparameters, resolve

log = logging.getLogger(__name__)

PREFIX = Path("/opt/ml")


class SageMakerContract:
    """Paths and settings of the /opt/ml tree under `prefix`, with SM_* variables taking precedence."""

    def __init__(self, prefix: Path = PREFIX, env: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix
        self.env = os.environ if env is None else env
        self.config_dir = prefix / "input" / "config"
        self.data_dir = prefix / "input" / "data"

    def _json(self, name: str) -> Any:
        path = self.config_dir / name
        return json.loads(path.read_text()) if path.is_file() else None

    def hyperparameters(self) -> dict[str, Any]:
        if "SM_HPS" in self.env:
            return json.loads(self.env["SM_HPS"])
        return self._json("hyperparameters.json") or {}

    def channel(self, name: str) -> Path:
        return Path(self.env.get(f"SM_CHANNEL_{name.upper()}", self.data_dir / name))

    def defaults(self) -> dict[str, Any]:
        """Config values the container decides: paths, hosts, job name. Hyperparameters and flags win."""
        values: dict[str, Any] = {
            "data": str(self.channel("training")),
            "model_dir": self.env.get("SM_MODEL_DIR", str(self.prefix / "model")),
            "output_dir": str(self.prefix / "output"),
            "checkpoint_dir": str(self.prefix / "checkpoints"),
            "pretrained_dir": str(self.channel("pretrained")),
            "job_name": self.env.get("TRAINING_JOB_NAME", ""),
            "git_sha": self.env.get("KENNEL_GIT_SHA", ""),
        }
        # Separate train/validation/test channels, when the job was given them, instead of one training
        # channel holding the three folders.
        for channel, key in (("train", "train_dir"), ("validation", "valid_dir"), ("test", "test_dir")):
            if self.channel(channel).is_dir():
                values[key] = str(self.channel(channel))
        checkpoint = self._json("checkpointconfig.json")
        if checkpoint and checkpoint.get("LocalPath"):
            values["checkpoint_dir"] = checkpoint["LocalPath"]
        resources = self._json("resourceconfig.json")
        if resources:
            values["hosts"] = tuple(resources["hosts"])
            values["current_host"] = resources["current_host"]
            values["instance_type"] = resources.get("current_instance_type", "")
        if "SM_HOSTS" in self.env:
            values["hosts"] = tuple(json.loads(self.env["SM_HOSTS"]))
        if "SM_CURRENT_HOST" in self.env:
            values["current_host"] = self.env["SM_CURRENT_HOST"]
        if "SM_OUTPUT_DIR" in self.env:
            values["output_dir"] = self.env["SM_OUTPUT_DIR"]
        return values


def load_config(flags: dict[str, Any], contract: SageMakerContract | None = None) -> TrainConfig:
    """The frozen config for this container: flags over hyperparameters over the contract's defaults."""
    contract = contract or SageMakerContract()
    hyperparameters, unknown = decode_hyperparameters(contract.hyperparameters())
    if unknown:
        log.warning("ignoring unknown hyperparameters: %s", ", ".join(sorted(unknown)))
    return resolve(flags, hyperparameters, contract.defaults())
