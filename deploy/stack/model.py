"""[images] and [model]: the tag of the images `up` pushes, and the model the endpoint serves."""

import re
from dataclasses import dataclass
from pathlib import Path

from deploy.stack.validate import StackError, Table

TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
LATEST_APPROVED = "latest-approved"


@dataclass(frozen=True)
class Images:
    tag: str | None


@dataclass(frozen=True)
class Model:
    dir: Path | None
    training_job: str | None
    # A version of the model registry's group ([registry]): a number, or LATEST_APPROVED.
    package: int | str | None = None


def parse_images(table: Table) -> Images:
    images = Images(tag=table.string("tag", required=False, pattern=TAG))
    table.reject_unknown()
    return images


def parse_model(table: Table, base: Path) -> Model:
    """Exactly one source: a model directory (relative to the stack file's folder), a training job, or a
    registered version (`package`: a version number or "latest-approved")."""
    model_dir = table.string("dir", required=False)
    training_job = table.string("training_job", required=False)
    package = table.data.get("package")
    table.read.add("package")
    version = isinstance(package, int) and not isinstance(package, bool) and package >= 1
    if package not in (None, LATEST_APPROVED) and not version:
        raise StackError(f'model.package: must be a version number (1 or more) or "{LATEST_APPROVED}"')
    if [model_dir, training_job, package].count(None) != 2:
        raise StackError("model: set exactly one of model.dir, model.training_job and model.package")
    table.reject_unknown()
    return Model(
        dir=(base / model_dir).resolve() if model_dir else None, training_job=training_job, package=package
    )
