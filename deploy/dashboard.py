"""The stack's CloudWatch dashboard, `NAME-operations`: one page with the endpoint's traffic, latency,
errors, instances and CPU, and the Lambda's concurrency, throttles and duration, plus the alarms.

    python -m deploy up --stack my-stack.toml      # puts it; the console shows it under Dashboards

The body is a function of the stack; `up` compares it with the stored one, so a second `up` changes
nothing. How to read it: docs/deploy.md.
"""

import json
from typing import Any

from deploy import alarms, function
from deploy.aws import Run
from deploy.stack import Stack

PERIOD = 60


def name(stack: Stack) -> str:
    return f"{stack.name}-operations"


def _series(namespace: str, metric: str, dims: list[dict[str, str]], **options: Any) -> list:
    flat = [part for d in dims for part in (d["Name"], d["Value"])]
    return [namespace, metric, *flat, options]


def _graph(stack: Stack, title: str, metrics: list, width: int, **extra: Any) -> dict[str, Any]:
    """A time-series widget; `layout` gives it its place on the page."""
    properties = {
        "title": title,
        "region": stack.region,
        "view": "timeSeries",
        "period": PERIOD,
        "metrics": metrics,
        **extra,
    }
    return {"type": "metric", "width": width, "height": 6, "properties": properties}


def _line(label: str, value: float) -> dict[str, Any]:
    return {"horizontal": [{"label": label, "value": value}]}


def layout(widgets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Places the widgets left to right in rows of 24 columns, in order."""
    x = y = 0
    placed = []
    for widget in widgets:
        if x + widget["width"] > 24:
            x, y = 0, y + 6
        placed.append({**widget, "x": x, "y": y})
        x += widget["width"]
    return placed


def _traffic(stack: Stack, ep: list[dict[str, str]]) -> dict[str, Any]:
    """Invocations, and the metric auto-scaling follows with its target (none on serverless)."""
    sm, kind, scaling = "AWS/SageMaker", stack.endpoint.kind, stack.autoscaling
    series = [_series(sm, "Invocations", ep, stat="Sum", label="invocations")]
    extra: dict[str, Any] = {}
    if kind == "realtime":
        label = "per instance (scaling metric)"
        series.append(_series(sm, "InvocationsPerInstance", ep, stat="Sum", label=label))
        extra["annotations"] = _line("scaling target", scaling.target_invocations_per_instance)
    elif kind == "async":
        queue = [{"Name": "EndpointName", "Value": stack.endpoint_name}]
        label = "queued per instance (scaling metric)"
        series.append(_series(sm, "ApproximateBacklogSizePerInstance", queue, stat="Average", label=label))
        series.append(_series(sm, "ApproximateBacklogSize", queue, stat="Average", label="queued"))
        extra["annotations"] = _line("scaling target", scaling.target_backlog_per_instance)
    return _graph(stack, "Endpoint invocations (per minute)", series, 8, **extra)


def body(run: Run) -> dict[str, Any]:
    """The widgets that apply to the stack's kind: instances and CPU unless serverless (whose cold
    starts show as ModelSetupTime instead), the Lambda unless async (which has no proxy)."""
    stack = run.stack
    ep, fn = alarms.endpoint_dimensions(stack), alarms.function_dimensions(stack)
    sm, hosts, lam = "AWS/SageMaker", "/aws/sagemaker/Endpoints", "AWS/Lambda"
    latency = [_series(sm, "ModelLatency", ep, stat=p, label=f"model {p}") for p in ("p50", "p90", "p99")]
    latency.append(_series(sm, "OverheadLatency", ep, stat="p99", label="SageMaker overhead p99"))
    if stack.endpoint.kind == "serverless":
        latency.append(_series(sm, "ModelSetupTime", ep, stat="Maximum", label="cold start (max)"))
    errors = [
        _series(sm, "Invocation5XXErrors", ep, stat="Sum", label="endpoint 5xx"),
        _series(sm, "Invocation4XXErrors", ep, stat="Sum", label="endpoint 4xx"),
    ]
    if stack.function:
        errors.append(_series(lam, "Errors", fn, stat="Sum", label="Lambda errors"))
    widgets = [
        _traffic(stack, ep),
        _graph(stack, "Model latency (microseconds)", latency, 8),
        _graph(stack, "Errors (per minute)", errors, 8),
    ]
    if stack.endpoint.instance_type is not None:
        cores = alarms.vcpus(stack.endpoint.instance_type)
        reporting = _series(hosts, "CPUUtilization", ep, stat="SampleCount", label="instances reporting")
        most = _line("auto-scaling maximum", stack.autoscaling.max_instances)
        usage = [
            _series(hosts, "CPUUtilization", ep, stat="Average", label="CPU average"),
            _series(hosts, "MemoryUtilization", ep, stat="Average", label="memory % average"),
        ]
        widgets += [
            _graph(stack, "Endpoint instances", [reporting], 8, annotations=most),
            _graph(
                stack,
                f"CPU (% summed over {cores} vCPUs)",
                usage,
                8,
                annotations=_line("all vCPUs busy", 100.0 * cores),
            ),
        ]
    if stack.function:
        alias = [*fn, {"Name": "Resource", "Value": f"{stack.function_name}:{function.ALIAS}"}]
        concurrency = [
            _series(lam, "ConcurrentExecutions", fn, stat="Maximum", label="concurrent (max)"),
            _series(lam, "Throttles", fn, stat="Sum", label="throttles"),
            _series(lam, "ProvisionedConcurrencySpilloverInvocations", alias, stat="Sum", label="spillover"),
        ]
        duration = [
            _series(lam, "Duration", fn, stat=s, label=f"duration {s}") for s in ("p50", "p99", "Maximum")
        ]
        widgets += [
            _graph(
                stack,
                "Lambda concurrency and throttles",
                concurrency,
                8,
                annotations=_line("reserved concurrency", stack.function.reserved_concurrency),
            ),
            _graph(
                stack,
                "Lambda duration (ms)",
                duration,
                12,
                annotations=_line("timeout", stack.function.timeout_seconds * 1000.0),
            ),
        ]
    names = [a["AlarmName"] for a in alarms.definitions(stack)]
    if names:
        alarm_arns = [run.arn("cloudwatch", f"alarm:{n}") for n in names]
        status = {"title": "Alarms", "alarms": alarm_arns}
        widgets.append({"type": "alarm", "width": 12, "height": 6, "properties": status})
    return {"widgets": layout(widgets)}


def _current(run: Run) -> dict[str, Any] | None:
    cloudwatch = run.client("cloudwatch")
    try:
        stored = cloudwatch.get_dashboard(DashboardName=name(run.stack))
    # GetDashboard's DashboardNotFoundError has the code ResourceNotFound, which botocore maps to this class.
    except cloudwatch.exceptions.ResourceNotFound:
        return None
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
