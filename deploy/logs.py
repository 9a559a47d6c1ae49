"""CloudWatch log groups, created by `up` with a retention period so nothing logs forever."""

import contextlib

from deploy.aws import Run


def _describe(run: Run, name: str) -> dict | None:
    groups = run.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return next((g for g in groups if g["logGroupName"] == name), None)


def ensure_log_group(run: Run, name: str, retention_days: int) -> None:
    logs = run.client("logs")
    group = _describe(run, name)
    if group is None:
        if run.apply("log group", name, "create", f"retention {retention_days} d"):
            logs.create_log_group(logGroupName=name, tags=run.stack.all_tags())
            logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)
    elif group.get("retentionInDays") != retention_days:
        if run.apply(
            "log group", name, "update", f"retention {group.get('retentionInDays')} -> {retention_days} d"
        ):
            logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)
    else:
        run.apply("log group", name, "unchanged")


def delete_log_group(run: Run, name: str) -> None:
    logs = run.client("logs")
    if _describe(run, name) is None or not run.apply("log group", name, "delete"):
        return
    with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
        logs.delete_log_group(logGroupName=name)
