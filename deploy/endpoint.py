"""The SageMaker endpoint: created once, then updated blue/green by switching to a new endpoint config.

After any wait, the endpoint must be InService *on the new config*: a failed blue/green update rolls
back and also ends InService, on the old config, so the status alone proves nothing.
"""

from botocore.exceptions import ClientError, WaiterError

from deploy import endpoint_config
from deploy.aws import DeployError, Run, sagemaker_not_found

BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack"}
BLUE_GREEN = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
        "TerminationWaitInSeconds": 0,
    }
}


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


def ensure_endpoint(run: Run, config: str, current: dict | None, new_instance_type: bool = False) -> None:
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
    elif run.apply("endpoint", name, "update", f"blue/green {current['EndpointConfigName']} -> {config}"):
        # Keep the instance count auto-scaling chose, unless the instance type changes with the config.
        exclude = [{"VariantPropertyType": "DesiredInstanceCount"}] if new_instance_type else []
        sagemaker.update_endpoint(
            EndpointName=name,
            EndpointConfigName=config,
            RetainAllVariantProperties=True,
            ExcludeRetainedVariantProperties=exclude,
            DeploymentConfig=BLUE_GREEN,
        )
        confirm(run, config)


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


def confirm(run: Run, config: str) -> None:
    described = wait(run)
    if described["EndpointConfigName"] != config:
        raise DeployError(
            f"endpoint {run.stack.endpoint_name} rolled back to {described['EndpointConfigName']}",
            described.get("FailureReason") or "no FailureReason given",
        )
    run.say(f"endpoint {run.stack.endpoint_name} is InService on {config}")


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
