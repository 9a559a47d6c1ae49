"""[training] and [tuning]: the training job `train` starts, and the hyperparameter search `tune` runs."""

import re
from dataclasses import dataclass

from deploy.stack.validate import INSTANCE_TYPE, StackError, Table

CHANNEL = re.compile(r"^[A-Za-z0-9\.\-_]+$")


@dataclass(frozen=True)
class Training:
    instance_type: str
    instance_count: int
    volume_size_gb: int
    max_runtime_seconds: int
    spot: bool
    max_wait_seconds: int
    channels: tuple[str, ...]
    hyperparameters: dict[str, str]
    tensorboard: bool = False  # TensorBoardOutputConfig: the job's TensorBoard scalars synced to S3


@dataclass(frozen=True)
class Tuning:
    max_jobs: int
    max_parallel_jobs: int
    learning_rate: tuple[float, float]
    batch_sizes: tuple[int, ...]


def parse_training(table: Table) -> Training:
    spot = table.boolean("spot")
    max_runtime = table.integer("max_runtime_seconds", minimum=60)
    max_wait = table.integer("max_wait_seconds", minimum=60)
    if spot and max_wait < max_runtime:
        raise StackError("training.max_wait_seconds: must be at least training.max_runtime_seconds")
    training = Training(
        instance_type=table.string("instance_type", pattern=INSTANCE_TYPE),
        instance_count=table.integer("instance_count", minimum=1),
        volume_size_gb=table.integer("volume_size_gb", minimum=1),
        max_runtime_seconds=max_runtime,
        spot=spot,
        max_wait_seconds=max_wait,
        channels=tuple(table.strings("channels", pattern=CHANNEL)),
        hyperparameters=table.table("hyperparameters").scalar_map(),
        tensorboard=table.boolean("tensorboard") if "tensorboard" in table.data else False,
    )
    table.reject_unknown()
    return training


def parse_tuning(table: Table) -> Tuning:
    lr = table.numbers("learning_rate", float, length=2)
    if not 0 < lr[0] < lr[1]:
        raise StackError("tuning.learning_rate: needs 0 < low < high")
    tuning = Tuning(
        max_jobs=table.integer("max_jobs", minimum=1),
        max_parallel_jobs=table.integer("max_parallel_jobs", minimum=1),
        learning_rate=(lr[0], lr[1]),
        batch_sizes=tuple(int(b) for b in table.numbers("batch_sizes", int)),
    )
    table.reject_unknown()
    return tuning
