"""CloudWatch alarms from the stack's `[alarms]` table: one alarm per threshold set, none for one left out.

    python -m deploy plan --stack my-stack.toml     # lists them; `up` puts them, `down` deletes them

Every alarm is named `NAME-alarm-...`, and only names with that prefix are ever listed, changed or deleted,
so target tracking's own `TargetTracking-*` alarms are never touched. An alarm's description ends with a
hash of its whole definition: `up` compares that, not CloudWatch's normalised echo of the fields, so a
second `up` changes nothing. What each alarm means and what to do when it fires: docs/deploy.md.
"""

import contextlib
import hashlib
import json
import re
from typing import Any

from deploy import function, notifications
from deploy.aws import Run
from deploy.stack import Stack

HASH = re.compile(r" \[kennel:([0-9a-f]{12})\]$")
MINUTE = 60


def prefix(stack: Stack) -> str:
    return f"{stack.name}-alarm-"


def vcpus(instance_type: str) -> int:
    """vCPUs of an ml.* instance type, from its size: EC2 names sizes by vCPU count for every family
    SageMaker hosts (medium 1, large 2, xlarge 4, Nxlarge 4N; ml.c5.9xlarge has 36). Burstable ml.t*
    types, the exception, are refused by the stack file."""
    size = instance_type.rsplit(".", 1)[-1]
    if size == "medium":
        return 1
    if size == "large":
        return 2
    match = re.fullmatch(r"(\d*)xlarge", size)
    if not match:
        raise ValueError(f"cannot tell the vCPU count of {instance_type}")
    return 4 * int(match.group(1) or 1)


def endpoint_dimensions(stack: Stack) -> list[dict[str, str]]:
    return [
        {"Name": "EndpointName", "Value": stack.endpoint_name},
        {"Name": "VariantName", "Value": stack.endpoint.variant},
    ]


def function_dimensions(stack: Stack) -> list[dict[str, str]]:
    return [{"Name": "FunctionName", "Value": stack.function_name}]


def _metric(namespace: str, name: str, dimensions: list[dict[str, str]], stat: str, period: int) -> dict:
    return {
        "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions},
            "Period": period,
            "Stat": stat,
        },
        "ReturnData": False,
    }


def _error_rate(stack: Stack, status: str, percent: float) -> dict[str, Any]:
    """Invocation{status}Errors as a percentage of Invocations, minute by minute (metric math)."""
    dims = endpoint_dimensions(stack)
    return {
        "Metrics": [
            {"Id": "errors", **_metric("AWS/SageMaker", f"Invocation{status}Errors", dims, "Sum", MINUTE)},
            {"Id": "invocations", **_metric("AWS/SageMaker", "Invocations", dims, "Sum", MINUTE)},
            {
                "Id": "rate",
                "Expression": "100 * FILL(errors, 0) / invocations",
                "Label": f"{status} errors, % of invocations",
                "ReturnData": True,
            },
        ],
        "Threshold": percent,
        "ComparisonOperator": "GreaterThanThreshold",
    }


def _single(namespace: str, name: str, dims: list[dict[str, str]], stat: str, period: int) -> dict[str, Any]:
    statistic = {"ExtendedStatistic": stat} if stat.startswith("p") else {"Statistic": stat}
    return {"Namespace": namespace, "MetricName": name, "Dimensions": dims, "Period": period, **statistic}


QUIET_IS_FINE = {"TreatMissingData": "notBreaching"}  # no traffic is not an error
ABOVE = {"ComparisonOperator": "GreaterThanThreshold"}
AT_LEAST = {"ComparisonOperator": "GreaterThanOrEqualToThreshold"}
Alarm = tuple[str, str, dict[str, Any]]  # name suffix, what it means, put_metric_alarm's metric fields


def _endpoint_alarms(stack: Stack, minutes: int) -> list[Alarm]:
    a, ep = stack.alarms, endpoint_dimensions(stack)
    # A sustained condition: every one-minute period of `minutes` breaches.
    sustained = {"EvaluationPeriods": minutes, "DatapointsToAlarm": minutes}
    alarms: list[Alarm] = []
    for status, percent in (("5XX", a.endpoint_5xx_percent), ("4XX", a.endpoint_4xx_percent)):
        if percent is not None:
            text = f"model {status} answers above {percent:g}% of invocations for {minutes} min"
            rate = _error_rate(stack, status, percent)
            alarms.append((f"endpoint-{status.lower()}-rate", text, {**rate, **sustained, **QUIET_IS_FINE}))
    if a.latency_p99_ms is not None:
        text = f"ModelLatency p99 above {a.latency_p99_ms:g} ms for {minutes} min"
        metric = _single("AWS/SageMaker", "ModelLatency", ep, "p99", MINUTE)
        # ModelLatency is in microseconds.
        limit = {"Threshold": a.latency_p99_ms * 1000, **ABOVE, **QUIET_IS_FINE}
        alarms.append(("endpoint-latency-p99", text, {**metric, **sustained, **limit}))
    if a.cpu_percent is not None:
        cores = vcpus(stack.endpoint.instance_type)
        text = f"CPU above {a.cpu_percent:g}% of each of {cores} vCPUs for {minutes} min"
        metric = _single("/aws/sagemaker/Endpoints", "CPUUtilization", ep, "Average", MINUTE)
        # CPUUtilization is summed over the instance's vCPUs: 0..100 x vCPUs. No data: instances gone.
        limit = {"Threshold": a.cpu_percent * cores, **ABOVE, "TreatMissingData": "missing"}
        alarms.append(("endpoint-cpu", text, {**metric, **sustained, **limit}))
    if a.at_max_instances_minutes is not None:
        most, held = stack.autoscaling.max_instances, a.at_max_instances_minutes
        text = f"{most} instances (the auto-scaling maximum) for {held} min"
        # Each instance reports CPUUtilization once a minute: the count of samples counts instances.
        metric = _single("/aws/sagemaker/Endpoints", "CPUUtilization", ep, "SampleCount", MINUTE)
        limit = {"EvaluationPeriods": held, "DatapointsToAlarm": held, "Threshold": float(most)}
        alarms.append(("endpoint-at-max-instances", text, {**metric, **limit, **AT_LEAST, **QUIET_IS_FINE}))
    return alarms


def _function_alarms(stack: Stack, minutes: int) -> list[Alarm]:
    if stack.function is None:  # an async stack has no proxy
        return []
    a, fn, name = stack.alarms, function_dimensions(stack), stack.function_name
    # A count: at least the threshold within one window of `minutes`.
    window = {"EvaluationPeriods": 1, "DatapointsToAlarm": 1, **AT_LEAST, **QUIET_IS_FINE}
    counts = [
        ("lambda-errors", "Errors", fn, a.lambda_errors, "function errors"),
        ("lambda-throttles", "Throttles", fn, a.lambda_throttles, "throttled invocations"),
    ]
    if stack.function.provisioned_concurrency > 0:
        alias = [*fn, {"Name": "Resource", "Value": f"{name}:{function.ALIAS}"}]
        spill = "invocations beyond provisioned concurrency"
        counts.append(
            (
                "lambda-spillover",
                "ProvisionedConcurrencySpilloverInvocations",
                alias,
                a.lambda_spillover,
                spill,
            )
        )
    alarms: list[Alarm] = []
    for suffix, metric_name, dims, threshold, what in counts:
        if threshold is not None:
            metric = _single("AWS/Lambda", metric_name, dims, "Sum", minutes * MINUTE)
            text = f"at least {threshold} {what} in {minutes} min"
            alarms.append((suffix, text, {**metric, **window, "Threshold": float(threshold)}))
    if a.lambda_duration_percent is not None:
        timeout = stack.function.timeout_seconds
        limit_ms = timeout * 1000 * a.lambda_duration_percent / 100
        text = (
            f"invocations reached {a.lambda_duration_percent:g}% of the {timeout} s timeout for {minutes} min"
        )
        metric = _single("AWS/Lambda", "Duration", fn, "Maximum", MINUTE)
        limit = {"EvaluationPeriods": minutes, "DatapointsToAlarm": minutes, "Threshold": limit_ms}
        alarms.append(("lambda-duration", text, {**metric, **limit, **AT_LEAST, **QUIET_IS_FINE}))
    return alarms


def definitions(stack: Stack) -> list[dict[str, Any]]:
    """put_metric_alarm's arguments for every alarm the stack asks for, without actions and tags."""
    minutes = stack.alarms.evaluation_minutes
    return [
        {"AlarmName": prefix(stack) + suffix, "AlarmDescription": f"Kennel {stack.name}: {text}", **body}
        for suffix, text, body in _endpoint_alarms(stack, minutes) + _function_alarms(stack, minutes)
    ]


def wanted(run: Run) -> list[dict[str, Any]]:
    """The definitions with the topic as action and the hash that tells `up` whether one changed."""
    actions = [notifications.topic_arn(run)] if run.stack.alarms.email else []
    out = []
    for definition in definitions(run.stack):
        full = {**definition, "ActionsEnabled": True, "AlarmActions": actions, "OKActions": actions}
        digest = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:12]
        out.append({**full, "AlarmDescription": f"{full['AlarmDescription']} [kennel:{digest}]"})
    return out


def describe(run: Run) -> dict[str, dict[str, Any]]:
    """This stack's alarms in CloudWatch by name (metric and metric-math alarms alike)."""
    pages = (
        run.client("cloudwatch")
        .get_paginator("describe_alarms")
        .paginate(AlarmNamePrefix=prefix(run.stack), AlarmTypes=["MetricAlarm"])
    )
    return {a["AlarmName"]: a for page in pages for a in page["MetricAlarms"]}


def ensure_alarms(run: Run) -> None:
    cloudwatch, current = run.client("cloudwatch"), describe(run)
    for alarm in wanted(run):
        name = alarm["AlarmName"]
        live = current.pop(name, None)
        text = HASH.sub("", alarm["AlarmDescription"]).split(": ", 1)[1]
        if live and live.get("AlarmDescription") == alarm["AlarmDescription"]:
            run.apply("alarm", name, "unchanged")
        elif run.apply("alarm", name, "update" if live else "create", text):
            cloudwatch.put_metric_alarm(**alarm, Tags=run.tag_list())
    _delete(run, sorted(current))


def delete_alarms(run: Run) -> None:
    _delete(run, sorted(describe(run)))


def _delete(run: Run, names: list[str]) -> None:
    for name in names:
        run.apply("alarm", name, "delete")
    if names and not run.dry_run:
        cloudwatch = run.client("cloudwatch")
        with contextlib.suppress(cloudwatch.exceptions.ResourceNotFound):
            cloudwatch.delete_alarms(AlarmNames=names)


def status(run: Run) -> list[str]:
    lines = []
    for name, alarm in sorted(describe(run).items()):
        reason = f" ({alarm['StateReason']})" if alarm["StateValue"] == "ALARM" else ""
        lines.append(f"  alarm {name}: {alarm['StateValue']}{reason}")
    return lines
