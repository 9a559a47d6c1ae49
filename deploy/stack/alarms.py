"""[alarms]: the CloudWatch alarms `up` creates, each only when its threshold is set."""

import re
from dataclasses import dataclass

from deploy.stack.validate import Table

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Alarms:
    """Alarm thresholds; None means that alarm is not created. `email` subscribes to the alarm topic."""

    evaluation_minutes: int = 5
    endpoint_5xx_percent: float | None = None
    endpoint_4xx_percent: float | None = None
    latency_p99_ms: float | None = None
    cpu_percent: float | None = None
    at_max_instances_minutes: int | None = None
    lambda_errors: int | None = None
    lambda_throttles: int | None = None
    lambda_duration_percent: float | None = None
    lambda_spillover: int | None = None
    email: str | None = None


def parse_alarms(table: Table) -> Alarms:
    """No alarms without the table."""
    if not table.present:
        return Alarms()
    alarms = Alarms(
        evaluation_minutes=table.optional_integer("evaluation_minutes", 1, 60) or 5,
        endpoint_5xx_percent=table.optional_percent("endpoint_5xx_percent"),
        endpoint_4xx_percent=table.optional_percent("endpoint_4xx_percent"),
        latency_p99_ms=table.optional_number("latency_p99_ms"),
        cpu_percent=table.optional_percent("cpu_percent"),
        at_max_instances_minutes=table.optional_integer("at_max_instances_minutes", 1, 1440),
        lambda_errors=table.optional_integer("lambda_errors", 1),
        lambda_throttles=table.optional_integer("lambda_throttles", 1),
        lambda_duration_percent=table.optional_percent("lambda_duration_percent"),
        lambda_spillover=table.optional_integer("lambda_spillover", 1),
        email=table.optional_string("email", None, EMAIL),
    )
    table.reject_unknown()
    return alarms
