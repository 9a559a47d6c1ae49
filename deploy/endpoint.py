"""The SageMaker endpoint: created once, then updated blue/green by switching to a new endpoint config,
all at once or in the canary or linear steps of `[endpoint.rollout]` (SageMaker's deployment guardrails),
which the stack's own alarms roll back.

After any wait, the endpoint must be InService *on the new config*: a failed blue/green update rolls
back and also ends InService, on the old config, so the status alone proves nothing.
"""

from collections.abc import Callable
from datetime import UTC, timedelta

from botocore.exceptions import ClientError, WaiterError

from deploy import alarms, endpoint_config, poll
from deploy.aws import DeployError, Run, sagemaker_not_found
from deploy.stack.rollout import TIMEOUT_SECONDS

BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack"}
BLUE_GREEN = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
        "TerminationWaitInSeconds": 0,
    }
}
TRAFFIC_ROUTING = {"all_at_once": "ALL_AT_ONCE", "canary": "CANARY", "linear": "LINEAR"}
# Called with the one-line reason when SageMaker rolled an update back and the old model still serves.
OnRollback = Callable[[str], None]


def describe(run: Run) -> dict | None:
    try:
        return run.client("sagemaker").describe_endpoint(EndpointName=run.stack.endpoint_name)
    except ClientError as err:
        if sagemaker_not_found(err):
            return None
        raise


def instance_type_changes(run: Run, current: dict) -> bool:
    """True when the live config runs another instance type: AWS then refuses the update until the
    variant is deregistered from auto-scaling."""
    live = run.client("sagemaker").describe_endpoint_config(EndpointConfigName=current["EndpointConfigName"])
    return any(v.get("InstanceType") != run.stack.endpoint.instance_type for v in live["ProductionVariants"])


def deployment_config(run: Run) -> dict:
    """UpdateEndpoint's DeploymentConfig for `[endpoint.rollout]`: BLUE_GREEN without the table."""
    rollout = run.stack.endpoint.rollout
    routing: dict = {"Type": TRAFFIC_ROUTING[rollout.strategy], "WaitIntervalInSeconds": rollout.wait_seconds}
    size = {"Type": "CAPACITY_PERCENT", "Value": rollout.step_percent}
    if rollout.strategy == "canary":
        routing["CanarySize"] = size
    elif rollout.strategy == "linear":
        routing["LinearStepSize"] = size
    policy = {"TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": rollout.bake_seconds}
    if rollout.timeout_seconds is not None:
        policy["MaximumExecutionTimeoutInSeconds"] = rollout.timeout_seconds
    config: dict = {"BlueGreenUpdatePolicy": policy}
    if rollout.alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in rollback_alarms(run)]}
    return config


def rollback_alarms(run: Run) -> list[str]:
    """The names of the alarms that roll a rollout back: the stack's own (deploy/alarms.py)."""
    return [alarms.prefix(run.stack) + suffix for suffix in run.stack.endpoint.rollout.alarms]


def rollout_summary(run: Run) -> str:
    """How `[endpoint.rollout]` moves the traffic, for `plan` and `up`."""
    rollout = run.stack.endpoint.rollout
    steps = {
        "all_at_once": "all at once",
        "canary": f"canary {rollout.step_percent}%, the rest after {rollout.wait_seconds} s",
        "linear": f"linear steps of {rollout.step_percent}% every {rollout.wait_seconds} s",
    }[rollout.strategy]
    watched = f", rollback on {', '.join(rollback_alarms(run))}" if rollout.alarms else ""
    return f"{steps}, bake {rollout.bake_seconds} s{watched}"


def ensure_endpoint(
    run: Run,
    config: str,
    current: dict | None,
    new_instance_type: bool = False,
    all_at_once: str | None = None,
    on_rollback: OnRollback | None = None,
) -> None:
    """Creates the endpoint on `config`, or updates it there as `[endpoint.rollout]` says; `all_at_once`
    names a change that SageMaker makes in one step whatever the stack asks (a new instance type or
    kind). `on_rollback` hears of an update SageMaker rolled back, before the DeployError is raised."""
    sagemaker, name = run.client("sagemaker"), run.stack.endpoint_name
    if current and current["EndpointStatus"] in BUSY and not run.dry_run:
        current = wait(run)
    if current is None:
        if run.apply("endpoint", name, "create", f"on {config}"):
            sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config, Tags=run.tag_list())
            confirm(run, config)
    elif current["EndpointStatus"] == "Failed":
        raise DeployError(
            f"endpoint {name} is Failed; run `down` and `up` again", current.get("FailureReason")
        )
    elif current["EndpointConfigName"] == config:
        run.apply("endpoint", name, "unchanged", f"on {config}")
    else:
        deployment = BLUE_GREEN if all_at_once else deployment_config(run)
        detail = f"blue/green {current['EndpointConfigName']} -> {config}"
        if all_at_once:
            detail += f", all at once: {all_at_once}"
        elif deployment != BLUE_GREEN:
            detail += f", {rollout_summary(run)}"
        if not run.apply("endpoint", name, "update", detail):
            return
        # Keep the instance count auto-scaling chose, unless the instance type changes with the config.
        exclude = [{"VariantPropertyType": "DesiredInstanceCount"}] if new_instance_type else []
        sagemaker.update_endpoint(
            EndpointName=name,
            EndpointConfigName=config,
            RetainAllVariantProperties=True,
            ExcludeRetainedVariantProperties=exclude,
            DeploymentConfig=deployment,
        )
        if deployment == BLUE_GREEN:
            confirm(run, config, on_rollback)
        else:
            follow_rollout(run, config, on_rollback)


def wait(run: Run) -> dict:
    """Waits until the endpoint leaves its transitional states; returns its description."""
    sagemaker, name = run.client("sagemaker"), run.stack.endpoint_name
    run.say(f"waiting for endpoint {name} ...")
    try:
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=name, WaiterConfig=run.waiter_config(90)
        )
    except WaiterError as err:
        described = describe(run) or {}
        raise DeployError(
            f"endpoint {name} is {described.get('EndpointStatus', 'gone')}",
            described.get("FailureReason") or str(err),
        ) from None
    return describe(run)


def confirm(run: Run, config: str, on_rollback: OnRollback | None = None) -> None:
    described = wait(run)
    if described["EndpointConfigName"] != config:
        rolled_back(run, described, on_rollback)
    run.say(f"endpoint {run.stack.endpoint_name} is InService on {config}")


def rolled_back(
    run: Run, described: dict, on_rollback: OnRollback | None, fired: list[str] | None = None
) -> None:
    """Raises the DeployError of an update SageMaker undid, naming the alarms that `fired` when known."""
    message = f"endpoint {run.stack.endpoint_name} rolled back to {described['EndpointConfigName']}"
    if fired:
        message += f": alarm {', '.join(fired)} fired; the old model still serves"
    elif fired is not None:
        message += ": no rollback alarm was seen in ALARM; the old model still serves"
    reason = described.get("FailureReason") or "no FailureReason given"
    if on_rollback:
        on_rollback(f"{message}: {reason}")
    raise DeployError(message, reason)


def follow_rollout(run: Run, config: str, on_rollback: OnRollback | None = None) -> None:
    """Follows a stepped update to its end, saying each change once: the new fleet's state and share of
    the traffic, each baking period's end, and the rollback alarms' states. Ends InService on `config`,
    or raises: rolled back (naming the alarms that fired), or failed."""
    rollout, name = run.stack.endpoint.rollout, run.stack.endpoint_name
    watched, states, fired, last = rollback_alarms(run), {}, [], [""]

    def check() -> dict | None:
        described = describe(run) or {"EndpointStatus": "gone", "EndpointConfigName": ""}
        line = progress(described, rollout.wait_seconds, rollout.bake_seconds)
        if described["EndpointStatus"] in BUSY and line != last[0]:
            run.say(line)
            last[0] = line
        for alarm in alarm_states(run, watched):
            if states.get(alarm["AlarmName"]) != alarm["StateValue"]:
                states[alarm["AlarmName"]] = alarm["StateValue"]
                why = f" ({alarm['StateReason']})" if alarm["StateValue"] == "ALARM" else ""
                run.say(f"  alarm {alarm['AlarmName']}: {alarm['StateValue']}{why}")
                if alarm["StateValue"] == "ALARM" and alarm["AlarmName"] not in fired:
                    fired.append(alarm["AlarmName"])
        return None if described["EndpointStatus"] in BUSY else described

    # SageMaker ends the deployment by its MaximumExecutionTimeout; the margin covers its rollback.
    within = (rollout.timeout_seconds or TIMEOUT_SECONDS[1]) + 600
    described = poll.until(
        check,
        what=f"endpoint {name} was still updating",
        within=within,
        first=run.poll_seconds,
        cap=run.poll_seconds,
        hint="`python -m deploy status` shows where it stands",
    )
    if described["EndpointStatus"] != "InService":
        raise DeployError(f"endpoint {name} is {described['EndpointStatus']}", described.get("FailureReason"))
    if described["EndpointConfigName"] != config:
        rolled_back(run, described, on_rollback, fired)
    run.say(f"endpoint {name} is InService on {config}: all traffic on the new model")


def alarm_states(run: Run, names: list[str]) -> list[dict]:
    if not names:
        return []
    return run.client("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]


def progress(described: dict, wait_seconds: int, bake_seconds: int) -> str:
    """One line on where a blue/green update stands: the new fleet's state and share of the traffic
    (its CurrentWeight against the old fleet's), and when a baking period ends."""
    pending = described.get("PendingDeploymentSummary")
    if not pending:
        return f"  endpoint {described['EndpointStatus']}"
    new = pending.get("ProductionVariants", [{}])[0]
    statuses = new.get("VariantStatus", [])
    state = ", ".join(s["Status"] for s in statuses) or described["EndpointStatus"]
    new_weight = new.get("CurrentWeight", 0.0)
    old_weight = sum(v.get("CurrentWeight", 0.0) for v in described.get("ProductionVariants", []))
    total = new_weight + old_weight
    share = round(100 * new_weight / total) if total else 0
    instances = f"{new.get('CurrentInstanceCount', 0)}/{new.get('DesiredInstanceCount', 0)} instances"
    line = f"  new fleet {state}: {share}% of traffic, {instances}"
    baking = next((s for s in statuses if s["Status"] == "Baking" and s.get("StartTime")), None)
    if baking:
        # A step's baking time until all traffic is on the new fleet; the final bake after.
        seconds = bake_seconds if share >= 100 else wait_seconds
        end = baking["StartTime"] + timedelta(seconds=seconds)
        line += f"; baking {seconds} s, until {end.astimezone(UTC):%H:%M:%S} UTC"
    return line


def delete_endpoint(run: Run) -> None:
    sagemaker, name = run.client("sagemaker"), run.stack.endpoint_name
    if describe(run) is None or not run.apply("endpoint", name, "delete"):
        return
    try:
        sagemaker.delete_endpoint(EndpointName=name)
    except ClientError as err:
        if not sagemaker_not_found(err):
            raise
    sagemaker.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=run.waiter_config(30))


def live_kind(run: Run) -> str | None:
    """The kind of the endpoint as it runs now; None when there is no endpoint."""
    current = describe(run)
    if current is None:
        return None
    config = endpoint_config.describe(run, current["EndpointConfigName"])
    return endpoint_config.live_kind(config) if config else None


def refuse_kind_switch(run: Run, kind: str | None) -> None:
    """AWS converts a serverless endpoint to instances, never instances to serverless: say so before
    `up` asks for it."""
    if kind and kind != "serverless" and run.stack.endpoint.kind == "serverless":
        raise DeployError(
            f"endpoint {run.stack.endpoint_name} is {kind}; SageMaker cannot update an instance-based "
            "endpoint to serverless",
            "run `python -m deploy down` then `up` (downtime), or deploy the serverless stack under "
            "another name and move the callers",
        )
