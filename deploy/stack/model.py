"""[images] and [model]: the tag of the images `up` pushes, and the model the endpoint serves."""

import re
from dataclasses import dataclass
from pathlib import Path

from deploy.stack.validate import StackError, Table

TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Images:
    tag: str | None


@dataclass(frozen=True)
class Model:
    dir: Path | None
    training_job: str | None


def parse_images(table: Table) -> Images:
    images = Images(tag=table.string("tag", required=False, pattern=TAG))
    table.reject_unknown()
    return images


def parse_model(table: Table, base: Path) -> Model:
    """Exactly one source: a model directory (relative to the stack file's folder) or a training job."""
    model_dir = table.string("dir", required=False)
    training_job = table.string("training_job", required=False)
    if (model_dir is None) == (training_job is None):
        raise StackError("model: set exactly one of model.dir and model.training_job")
    table.reject_unknown()
    return Model(dir=(base / model_dir).resolve() if model_dir else None, training_job=training_job)
