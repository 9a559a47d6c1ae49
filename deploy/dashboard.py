"""The stack's CloudWatch dashboard, `NAME-operations`: one page with the endpoint's traffic, latency,
errors, instances and CPU, and the Lambda's concurrency, throttles and duration, plus the alarms.

    python -m deploy up --stack my-stack.toml      # puts it; the console shows it under Dashboards

The body is a function of the stack; `up` compares it with the stored one, so a second `up` changes
nothing. How to read it: docs/deploy.md.
"""

import json
from typing import Any

from botocore.exceptions import ClientError

from deploy import alarms, function
from deploy.aws import Run, is_not_found
from deploy.stack import Stack

PERIOD = 60


def name(stack: Stack) -> str:
    return f"{stack.name}-operations"


def _series(namespace: str, metric: str, dims: list[dict[str, str]], **options: Any) -> list:
    flat = [part for d in dims for part in (d["Name"], d["Value"])]
    return [namespace, metric, *flat, options]


def _graph(
    stack: Stack, title: str, metrics: list, position: tuple[int, int, int], **extra: Any
) -> dict[str, Any]:
    x, y, width = position
    properties = {
        "title": title,
        "region": stack.region,
        "view": "timeSeries",
        "period": PERIOD,
        "metrics": metrics,
        **extra,
    }
    return {"type": "metric", "x": x, "y": y, "width": width, "height": 6, "properties": properties}


def _line(label: str, value: float) -> dict[str, Any]:
    return {"horizontal": [{"label": label, "value": value}]}


def body(run: Run) -> dict[str, Any]:
    stack = run.stack
    ep, fn = alarms.endpoint_dimensions(stack), alarms.function_dimensions(stack)
    sm, hosts, lam = "AWS/SageMaker", "/aws/sagemaker/Endpoints", "AWS/Lambda"
    cores = alarms.vcpus(stack.endpoint.instance_type)
    alias = [*fn, {"Name": "Resource", "Value": f"{stack.function_name}:{function.ALIAS}"}]
    widgets = [
        _graph(
            stack,
            "Endpoint invocations (per minute)",
            [
                _series(sm, "Invocations", ep, stat="Sum", label="invocations"),
                _series(sm, "InvocationsPerInstance", ep, stat="Sum", label="per instance (scaling metric)"),
            ],
            (0, 0, 8),
            annotations=_line("scaling target", stack.autoscaling.target_invocations_per_instance),
        ),
        _graph(
            stack,
            "Model latency (microseconds)",
            [_series(sm, "ModelLatency", ep, stat=p, label=f"model {p}") for p in ("p50", "p90", "p99")]
            + [_series(sm, "OverheadLatency", ep, stat="p99", label="SageMaker overhead p99")],
            (8, 0, 8),
        ),
        _graph(
            stack,
            "Errors (per minute)",
            [
                _series(sm, "Invocation5XXErrors", ep, stat="Sum", label="endpoint 5xx"),
                _series(sm, "Invocation4XXErrors", ep, stat="Sum", label="endpoint 4xx"),
                _series(lam, "Errors", fn, stat="Sum", label="Lambda errors"),
            ],
            (16, 0, 8),
        ),
        _graph(
            stack,
            "Endpoint instances",
            [_series(hosts, "CPUUtilization", ep, stat="SampleCount", label="instances reporting")],
            (0, 6, 8),
            annotations=_line("auto-scaling maximum", stack.autoscaling.max_instances),
        ),
        _graph(
            stack,
            f"CPU (% summed over {cores} vCPUs)",
            [
                _series(hosts, "CPUUtilization", ep, stat="Average", label="CPU average"),
                _series(hosts, "MemoryUtilization", ep, stat="Average", label="memory % average"),
            ],
            (8, 6, 8),
            annotations=_line("all vCPUs busy", 100.0 * cores),
        ),
        _graph(
            stack,
            "Lambda concurrency and throttles",
            [
                _series(lam, "ConcurrentExecutions", fn, stat="Maximum", label="concurrent (max)"),
                _series(lam, "Throttles", fn, stat="Sum", label="throttles"),
                _series(
                    lam, "ProvisionedConcurrencySpilloverInvocations", alias, stat="Sum", label="spillover"
                ),
            ],
            (16, 6, 8),
            annotations=_line("reserved concurrency", stack.function.reserved_concurrency),
        ),
        _graph(
            stack,
            "Lambda duration (ms)",
            [_series(lam, "Duration", fn, stat=s, label=f"duration {s}") for s in ("p50", "p99", "Maximum")],
            (0, 12, 12),
            annotations=_line("timeout", stack.function.timeout_seconds * 1000.0),
        ),
    ]
    names = [a["AlarmName"] for a in alarms.definitions(stack)]
    if names:
        alarm_arns = [run.arn("cloudwatch", f"alarm:{n}") for n in names]
        status = {"title": "Alarms", "alarms": alarm_arns}
        widgets.append({"type": "alarm", "x": 12, "y": 12, "width": 12, "height": 6, "properties": status})
    return {"widgets": widgets}


def _current(run: Run) -> dict[str, Any] | None:
    try:
        stored = run.client("cloudwatch").get_dashboard(DashboardName=name(run.stack))
    except ClientError as err:
        if is_not_found(err) or err.response.get("Error", {}).get("Code") == "ResourceNotFound":
            return None
        raise
    return json.loads(stored["DashboardBody"])


def ensure_dashboard(run: Run) -> None:
    wanted, current, label = body(run), _current(run), name(run.stack)
    widgets = f"{len(wanted['widgets'])} widgets"
    if current == wanted:
        run.apply("dashboard", label, "unchanged", widgets)
    elif run.apply("dashboard", label, "update" if current else "create", widgets):
        run.client("cloudwatch").put_dashboard(DashboardName=label, DashboardBody=json.dumps(wanted))


def delete_dashboard(run: Run) -> None:
    if _current(run) is not None and run.apply("dashboard", name(run.stack), "delete"):
        run.client("cloudwatch").delete_dashboards(DashboardNames=[name(run.stack)])
