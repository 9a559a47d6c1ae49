"""`plan`, `up`, `down` and `status`: the resource modules in dependency order, and that order reversed.

`plan` runs `up`'s exact code with a dry-run `Run`: every module describes first and, in a dry run,
only records what it would do. So the plan is what `up` then does, by construction.
"""

from deploy import (
    alarms,
    autoscaling,
    dashboard,
    ecr,
    endpoint,
    endpoint_config,
    function,
    iam,
    logs,
    model,
    notifications,
    preflight,
    registry,
    s3,
    topics,
)
from deploy.aws import Run


def rejecting(
    run: Run, version: registry.Version | None, on_rollback: endpoint.OnRollback | None
) -> endpoint.OnRollback | None:
    """What hears of a rolled-back release: with a registry version deployed, the registry first, which
    marks that version Rejected with SageMaker's reason, so `latest-approved` no longer picks it."""
    if version is None:
        return on_rollback

    def reject(reason: str) -> None:
        registry.reject(run, version.number, f"rolled back by SageMaker: {reason}")
        if on_rollback:
            on_rollback(reason)

    return reject


def up(run: Run, with_preflight: bool = False, on_rollback: endpoint.OnRollback | None = None) -> Run:
    """`with_preflight`: run a new model in the local serving image before anything goes to AWS.
    `on_rollback` hears of a release SageMaker rolled back (the old model still serves)."""
    stack = run.stack
    version = registry.deployable(run)  # refuses a version that is not approved before anything changes
    live_kind = endpoint.live_kind(run)
    endpoint.refuse_kind_switch(run, live_kind)
    # SNS and the wake-up alarm are touched only by async stacks, or to clear what one left behind.
    was_async = stack.endpoint.kind == "async" or live_kind == "async"
    s3.ensure_bucket(run)
    preflight.ensure_preflight(run, with_preflight)
    uris = {}
    for image in ecr.UP_IMAGES:
        ecr.ensure_repository(run, image)
        uris[image] = ecr.ensure_image(run, image)
    logs.ensure_log_group(run, stack.endpoint_log_group, stack.endpoint.log_retention_days)
    if stack.function:
        logs.ensure_log_group(run, stack.lambda_log_group, stack.function.log_retention_days)
    arns = {name: iam.ensure_role(run, name, service, policy) for name, service, policy in iam.roles(run)}
    if was_async:
        topics.ensure_topics(run)
    if stack.registry:
        registry.ensure_group(run)
    if version:
        served = registry.served(run, version)
        model_name = model.ensure_package_model(run, version.arn, arns[stack.hosting_role], served)
    else:
        model_data = s3.ensure_model_data(run)
        model_name = model.ensure_model(run, uris["serve"], model_data, arns[stack.hosting_role])
    config = endpoint_config.ensure_endpoint_config(run, model_name)
    current = endpoint.describe(run)
    new_type = (
        bool(current)
        and current["EndpointConfigName"] != config
        and endpoint.instance_type_changes(run, current)
    )
    if new_type:
        autoscaling.delete_scaling(run)
    # The alarms that roll a rollout back must exist before the update that names them.
    notifications.ensure_topic(run)
    alarms.ensure_alarms(run)
    # SageMaker makes these changes all at once, whatever [endpoint.rollout] asks (docs/deploy.md).
    all_at_once = "the instance type changes" if new_type else None
    if live_kind and live_kind != stack.endpoint.kind:
        all_at_once = f"the endpoint kind changes from {live_kind}"
    # The one place a rolled-back release is reported.
    endpoint.ensure_endpoint(
        run, config, current, new_type, all_at_once, rejecting(run, version, on_rollback)
    )
    # The previous config and model are kept by SageMaker only while in use; drop ours once superseded.
    endpoint_config.delete_endpoint_configs(run, keep=config)
    model.delete_models(run, keep=model_name)
    ensure_kind_scaling(run, was_async)
    if stack.function:
        function.ensure_function(run, arns[stack.lambda_role])
    else:
        remove_proxy(run)
    dashboard.ensure_dashboard(run)
    return run


def down(run: Run) -> Run:
    """Everything `up` made, in reverse; what is already gone counts as done. The bucket stays."""
    stack = run.stack
    dashboard.delete_dashboard(run)
    alarms.delete_alarms(run)
    notifications.delete_topic(run)
    was_async = stack.endpoint.kind == "async" or endpoint.live_kind(run) == "async"
    function.delete_function(run)
    if was_async:
        autoscaling.delete_wake_up(run)
    autoscaling.delete_scaling(run)
    endpoint.delete_endpoint(run)
    if was_async:
        topics.delete_topics(run)
    endpoint_config.delete_endpoint_configs(run)
    model.delete_models(run)
    s3.delete_model_data(run)
    registry.delete_group(run)
    for name, _, _ in reversed(iam.roles(run)):
        iam.delete_role(run, name)
    if stack.function is None:
        iam.delete_role(run, stack.lambda_role)
    logs.delete_log_group(run, stack.lambda_log_group)
    logs.delete_log_group(run, stack.endpoint_log_group)
    for image in reversed(ecr.IMAGES):
        ecr.delete_repository(run, image)
    return run


def status(run: Run) -> list[str]:
    """A few lines: the endpoint and its variants, auto-scaling, and the Lambda's versions and concurrency."""
    stack, lines = run.stack, []
    described = endpoint.describe(run)
    if described is None:
        lines.append(f"endpoint {stack.endpoint_name}: absent")
    else:
        reason = f" ({described['FailureReason']})" if described.get("FailureReason") else ""
        lines.append(
            f"endpoint {stack.endpoint_name}: {described['EndpointStatus']}{reason}"
            f" on {described['EndpointConfigName']}"
        )
        for v in described.get("ProductionVariants", []):
            lines.append(
                f"  variant {v['VariantName']}: {v.get('CurrentInstanceCount')} running, "
                f"{v.get('DesiredInstanceCount')} desired"
            )
    lines.extend(kind_status(run, described))
    target, policy = autoscaling.describe_target(run), autoscaling.describe_policy(run)
    if target:
        lines.append(f"  scaling: {target['MinCapacity']}..{target['MaxCapacity']} instances")
    if policy:
        tt = policy["TargetTrackingScalingPolicyConfiguration"]
        unit = "requests queued/instance" if stack.endpoint.kind == "async" else "invocations/instance/min"
        lines.append(
            f"  policy {policy['PolicyName']}: {tt['TargetValue']:g} {unit}, "
            f"cooldown in {tt.get('ScaleInCooldown')} s / out {tt.get('ScaleOutCooldown')} s"
        )
    if stack.function:
        lines.extend(_function_status(run))
    lines.extend(alarms.status(run) + notifications.status(run))
    return lines


def _function_status(run: Run) -> list[str]:
    aws, name = run.client("lambda"), run.stack.function_name
    if function.get_configuration(run) is None:
        return [f"lambda {name}: absent"]
    versions = [v["Version"] for v in aws.list_versions_by_function(FunctionName=name)["Versions"]]
    live = function.get_configuration(run, function.ALIAS)
    reserved = aws.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
    lines = [
        f"lambda {name}: versions {', '.join(versions)}; {function.ALIAS} -> {live and live['Version']}",
        f"  reserved concurrency: {reserved}",
    ]
    if run.stack.function.provisioned_concurrency:
        pc = aws.get_provisioned_concurrency_config(FunctionName=name, Qualifier=function.ALIAS)
        lines.append(
            f"  provisioned concurrency: {pc.get('AllocatedProvisionedConcurrentExecutions')}/"
            f"{pc['RequestedProvisionedConcurrentExecutions']} {pc['Status']}"
        )
    return lines


def ensure_kind_scaling(run: Run, was_async: bool) -> None:
    """Realtime: target tracking on invocations. Async: on the queue, down to zero, plus the wake-up
    policy and alarm. Serverless: none. What an async endpoint before it left is removed."""
    stack = run.stack
    if stack.endpoint.kind != "async" and was_async:
        autoscaling.delete_wake_up(run)
    if stack.autoscaling is None:
        autoscaling.delete_scaling(run)
        return
    autoscaling.ensure_scaling(run)
    if stack.endpoint.kind == "async":
        autoscaling.ensure_wake_up(run)
        autoscaling.delete_stale_policies(run, keep={stack.scaling_policy, autoscaling.wake_policy_name(run)})


def remove_proxy(run: Run) -> None:
    """An async stack has no Lambda proxy (stack/kinds.py says why): remove one an earlier kind left."""
    function.delete_function(run)
    iam.delete_role(run, run.stack.lambda_role)
    logs.delete_log_group(run, run.stack.lambda_log_group)


def kind_status(run: Run, described: dict | None) -> list[str]:
    """The endpoint kind and its settings as the live endpoint config has them."""
    stack = run.stack
    if described is None:
        return []
    config = run.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=described["EndpointConfigName"]
    )
    lines = [f"  kind: {endpoint_config.live_kind(config)} (stack file: {stack.endpoint.kind})"]
    for v in config.get("ProductionVariants", []):
        if "ServerlessConfig" in v:
            sc = v["ServerlessConfig"]
            lines.append(
                f"  serverless: {sc['MemorySizeInMB']} MB, max concurrency {sc['MaxConcurrency']}, "
                f"provisioned {sc.get('ProvisionedConcurrency', 0)}"
            )
    output = config.get("AsyncInferenceConfig", {}).get("OutputConfig")
    if output:
        lines.append(f"  async results: {output['S3OutputPath']}, failures: {output['S3FailurePath']}")
        for key, topic in output.get("NotificationConfig", {}).items():
            lines.append(f"  async {key}: {topic}")
    if stack.endpoint.kind == "async":
        wake = autoscaling.policies(run).get(autoscaling.wake_policy_name(run))
        alarm = autoscaling.describe_alarm(run)
        lines.append(
            f"  wake-up: policy {'present' if wake else 'absent'}, alarm "
            f"{alarm['AlarmName'] + ' ' + alarm.get('StateValue', '') if alarm else 'absent'}"
        )
    return lines
