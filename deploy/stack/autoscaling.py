"""[autoscaling]: the bounds and target of the endpoint's instance count (realtime and async endpoints;
a serverless endpoint scales itself)."""

from dataclasses import dataclass

from deploy.stack.endpoint import Endpoint
from deploy.stack.validate import StackError, Table


@dataclass(frozen=True)
class Autoscaling:
    min_instances: int
    max_instances: int
    target_invocations_per_instance: float | None  # realtime
    scale_in_cooldown_seconds: int
    scale_out_cooldown_seconds: int
    target_backlog_per_instance: float | None = None  # async


def parse_autoscaling(table: Table, endpoint: Endpoint) -> Autoscaling | None:
    """None without the table (serverless). Async endpoints may scale to zero instances, but start with
    at least one (endpoint.instance_count)."""
    if not table.present:
        return None
    lo = table.integer("min_instances", minimum=0 if endpoint.kind == "async" else 1)
    hi = table.integer("max_instances", minimum=1)
    if not lo <= endpoint.instance_count <= hi:
        raise StackError(
            "autoscaling.min_instances: needs min_instances <= endpoint.instance_count <= max_instances"
        )
    scaling = Autoscaling(
        min_instances=lo,
        max_instances=hi,
        target_invocations_per_instance=table.number("target_invocations_per_instance")
        if endpoint.kind == "realtime"
        else None,
        scale_in_cooldown_seconds=table.integer("scale_in_cooldown_seconds", minimum=0),
        scale_out_cooldown_seconds=table.integer("scale_out_cooldown_seconds", minimum=0),
        target_backlog_per_instance=table.number("target_backlog_per_instance")
        if endpoint.kind == "async"
        else None,
    )
    table.reject_unknown()
    return scaling
