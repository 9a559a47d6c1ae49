"""Endpoint auto-scaling: a scalable target (min, max) and target tracking on invocations per instance
with both cooldowns. Registered only once the endpoint is InService."""

from deploy.aws import Run

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"


def resource_id(run: Run) -> str:
    return f"endpoint/{run.stack.endpoint_name}/variant/{run.stack.endpoint.variant}"


def target_tracking(run: Run) -> dict:
    scaling = run.stack.autoscaling
    if run.stack.endpoint.kind == "async":
        return backlog_tracking(run)
    return {
        "TargetValue": scaling.target_invocations_per_instance,
        "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
        "ScaleInCooldown": scaling.scale_in_cooldown_seconds,
        "ScaleOutCooldown": scaling.scale_out_cooldown_seconds,
    }


def describe_target(run: Run) -> dict | None:
    targets = run.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=[resource_id(run)], ScalableDimension=DIMENSION
    )["ScalableTargets"]
    return targets[0] if targets else None


def describe_policy(run: Run) -> dict | None:
    policies = run.client("application-autoscaling").describe_scaling_policies(
        ServiceNamespace=NAMESPACE, ResourceId=resource_id(run), ScalableDimension=DIMENSION
    )["ScalingPolicies"]
    return next((p for p in policies if p["PolicyName"] == run.stack.scaling_policy), None)


def ensure_scaling(run: Run) -> None:
    aas, scaling, rid = run.client("application-autoscaling"), run.stack.autoscaling, resource_id(run)
    target = describe_target(run)
    bounds = (scaling.min_instances, scaling.max_instances)
    if target and (target["MinCapacity"], target["MaxCapacity"]) == bounds:
        run.apply("scalable target", rid, "unchanged", f"{bounds[0]}..{bounds[1]}")
    elif run.apply(
        "scalable target", rid, "update" if target else "create", f"{bounds[0]}..{bounds[1]} instances"
    ):
        extra = {} if target else {"Tags": run.stack.all_tags()}
        aas.register_scalable_target(
            ServiceNamespace=NAMESPACE,
            ResourceId=rid,
            ScalableDimension=DIMENSION,
            MinCapacity=bounds[0],
            MaxCapacity=bounds[1],
            **extra,
        )
    policy, wanted = describe_policy(run), target_tracking(run)
    current = policy and {k: policy["TargetTrackingScalingPolicyConfiguration"].get(k) for k in wanted}
    name = run.stack.scaling_policy
    if current == wanted:
        run.apply("scaling policy", name, "unchanged", target_label(run, wanted))
    elif run.apply(
        "scaling policy",
        name,
        "update" if policy else "create",
        target_label(run, wanted),
    ):
        aas.put_scaling_policy(
            PolicyName=name,
            ServiceNamespace=NAMESPACE,
            ResourceId=rid,
            ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration=wanted,
        )


def delete_scaling(run: Run) -> None:
    aas, rid = run.client("application-autoscaling"), resource_id(run)
    if describe_policy(run) and run.apply("scaling policy", run.stack.scaling_policy, "delete"):
        aas.delete_scaling_policy(
            PolicyName=run.stack.scaling_policy,
            ServiceNamespace=NAMESPACE,
            ResourceId=rid,
            ScalableDimension=DIMENSION,
        )
    if describe_target(run) and run.apply("scalable target", rid, "delete"):
        aas.deregister_scalable_target(
            ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION
        )


# Async endpoints (https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-autoscale.html): target
# tracking on the queue per instance, down to zero instances; at zero there is no "per instance", so a
# step policy driven by the HasBacklogWithoutCapacity alarm adds the first instance when work arrives.
BACKLOG_METRIC = "ApproximateBacklogSizePerInstance"
WAKE_METRIC = "HasBacklogWithoutCapacity"


def backlog_tracking(run: Run) -> dict:
    scaling = run.stack.autoscaling
    return {
        "TargetValue": scaling.target_backlog_per_instance,
        "CustomizedMetricSpecification": {
            "MetricName": BACKLOG_METRIC,
            "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "EndpointName", "Value": run.stack.endpoint_name}],
            "Statistic": "Average",
        },
        "ScaleInCooldown": scaling.scale_in_cooldown_seconds,
        "ScaleOutCooldown": scaling.scale_out_cooldown_seconds,
    }


def wake_policy_name(run: Run) -> str:
    return f"{run.stack.name}-wake-on-backlog"


def wake_alarm_name(run: Run) -> str:
    return f"{run.stack.name}-has-backlog-without-capacity"


def wake_step_scaling(run: Run) -> dict:
    return {
        "AdjustmentType": "ChangeInCapacity",
        "MetricAggregationType": "Average",
        "Cooldown": run.stack.autoscaling.scale_out_cooldown_seconds,
        "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
    }


def wake_alarm(run: Run, policy_arn: str) -> dict:
    """The alarm as AWS documents it: HasBacklogWithoutCapacity >= 1 for two minutes in a row."""
    return {
        "AlarmName": wake_alarm_name(run),
        "AlarmDescription": f"Kennel stack {run.stack.name}: wake {run.stack.endpoint_name} from zero",
        "MetricName": WAKE_METRIC,
        "Namespace": "AWS/SageMaker",
        "Statistic": "Average",
        "Dimensions": [{"Name": "EndpointName", "Value": run.stack.endpoint_name}],
        "Period": 60,
        "EvaluationPeriods": 2,
        "DatapointsToAlarm": 2,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "missing",
        "AlarmActions": [policy_arn],
    }


def policies(run: Run) -> dict[str, dict]:
    """Every scaling policy on the endpoint's variant, by name."""
    listed = run.client("application-autoscaling").describe_scaling_policies(
        ServiceNamespace=NAMESPACE, ResourceId=resource_id(run), ScalableDimension=DIMENSION
    )["ScalingPolicies"]
    return {p["PolicyName"]: p for p in listed if p["ResourceId"] == resource_id(run)}


def describe_alarm(run: Run) -> dict | None:
    alarms = run.client("cloudwatch").describe_alarms(AlarmNames=[wake_alarm_name(run)])["MetricAlarms"]
    return alarms[0] if alarms else None


def ensure_wake_up(run: Run) -> None:
    """The step policy and its alarm that scale an async endpoint from zero to one instance."""
    aas, name, wanted = run.client("application-autoscaling"), wake_policy_name(run), wake_step_scaling(run)
    policy = policies(run).get(name)
    arn = policy and policy["PolicyARN"]
    if policy and policy.get("StepScalingPolicyConfiguration") == wanted:
        run.apply("scaling policy", name, "unchanged", f"+1 instance on {WAKE_METRIC}")
    elif run.apply("scaling policy", name, "update" if policy else "create", f"+1 instance on {WAKE_METRIC}"):
        arn = aas.put_scaling_policy(
            PolicyName=name,
            ServiceNamespace=NAMESPACE,
            ResourceId=resource_id(run),
            ScalableDimension=DIMENSION,
            PolicyType="StepScaling",
            StepScalingPolicyConfiguration=wanted,
        )["PolicyARN"]
    alarm = describe_alarm(run)
    wanted_alarm = wake_alarm(run, arn or "arn:(policy to be created)")
    same = alarm and all(alarm.get(k) == v for k, v in wanted_alarm.items())
    if same:
        run.apply("cloudwatch alarm", wanted_alarm["AlarmName"], "unchanged")
    elif run.apply(
        "cloudwatch alarm", wanted_alarm["AlarmName"], "update" if alarm else "create", WAKE_METRIC
    ):
        # Tagged in the same call: tags put in a second call would be lost to an up that failed between
        # the two, as the next up finds the alarm unchanged.
        run.client("cloudwatch").put_metric_alarm(**wanted_alarm, Tags=run.tag_list())


def delete_wake_up(run: Run) -> None:
    """Removes the wake-up alarm and every policy but the stack's target tracking one."""
    if describe_alarm(run) and run.apply("cloudwatch alarm", wake_alarm_name(run), "delete"):
        run.client("cloudwatch").delete_alarms(AlarmNames=[wake_alarm_name(run)])
    delete_stale_policies(run, keep={run.stack.scaling_policy})


def delete_stale_policies(run: Run, keep: set[str]) -> None:
    """Removes this variant's scaling policies other than `keep`: what another endpoint kind left."""
    aas = run.client("application-autoscaling")
    for name in sorted(set(policies(run)) - keep):
        if run.apply("scaling policy", name, "delete"):
            aas.delete_scaling_policy(
                PolicyName=name,
                ServiceNamespace=NAMESPACE,
                ResourceId=resource_id(run),
                ScalableDimension=DIMENSION,
            )


def target_label(run: Run, wanted: dict) -> str:
    if run.stack.endpoint.kind == "async":
        return f"target {wanted['TargetValue']:g} queued/instance"
    return f"target {wanted['TargetValue']:g}/instance/min"
