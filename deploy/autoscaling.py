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
        run.apply("scaling policy", name, "unchanged", f"target {wanted['TargetValue']:g}/instance/min")
    elif run.apply(
        "scaling policy",
        name,
        "update" if policy else "create",
        f"target {wanted['TargetValue']:g}/instance/min",
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
