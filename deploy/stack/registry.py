"""[registry]: every model Kennel trains or is given is registered in SageMaker's Model Registry, in the
model package group NAME-models, as a version that waits for approval; `[model] package` then makes `up`
serve an approved version, and nothing else."""

from dataclasses import dataclass

from deploy.stack.model import Model
from deploy.stack.validate import StackError, Table


@dataclass(frozen=True)
class Registry:
    description: str | None  # the group's description in the console; None: a default naming the stack


def parse_registry(table: Table, model: Model) -> Registry | None:
    if not table.present:
        if model.package is not None:
            raise StackError(
                "model.package: serves a version from the model registry, so the stack needs a [registry]"
                " table (empty is enough)"
            )
        return None
    registry = Registry(description=table.string("description", required=False))
    table.reject_unknown()
    return registry
