"""IAM roles with one inline policy each, scoped to the exact ARNs of this stack's resources.

The policy documents are plain functions of the stack, so tests lint exactly what `up` puts in place.
`Resource: "*"` appears only for the actions in RESOURCE_STAR_ONLY, where AWS offers nothing narrower.
Each role trusts its one service only when the service acts for this account (`trust_policy`), and with
`permissions_boundary` in the stack file every role is bounded by that managed policy, whose document
`boundary_policy` writes: then the identity running deploy, which may create roles only with that
boundary (docs/deploy.md), cannot grant itself more through them.
"""

import contextlib
import json
from typing import Any

from deploy import alarms, endpoint, topics
from deploy.aws import DeployError, Run

# The only actions granted on "*", each because the service has no resource type for it.
RESOURCE_STAR_ONLY = {
    "ecr:GetAuthorizationToken": "the registry login token is account-wide; ECR has no resource for it",
    "cloudwatch:PutMetricData": "metrics have no ARN; a cloudwatch:namespace condition limits it instead",
}
# Where SageMaker publishes a job's or an endpoint's instance metrics, with the job's role.
ENDPOINT_METRICS = "/aws/sagemaker/Endpoints"
TRAINING_METRICS = "/aws/sagemaker/TrainingJobs"
TRANSFORM_METRICS = "/aws/sagemaker/TransformJobs"
POLICY_NAME = "kennel"
Policy = dict[str, Any]


def _policy(*statements: dict[str, Any]) -> Policy:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _allow(sid: str, actions: list[str], resources: list[str], **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def trust_policy(run: Run, role: str, service: str) -> Policy:
    """The service may assume the role only on behalf of this account (aws:SourceAccount) and, for
    SageMaker, only for its resources here (aws:SourceArn): so no one else can have the service use the
    role for them, the confused deputy of AWS's guidance. SageMaker's guidance gives the ARN patterns:
    training jobs for the training role (and the tuning jobs that start them), and for endpoints
    `arn:...:sagemaker:REGION:ACCOUNT:*`, which it says not to narrow. AWS documents no aws:SourceArn
    that Lambda sets when it assumes an execution role, and a condition on a key the service leaves unset
    makes the role unassumable, so the proxy's role checks the account alone."""
    condition: dict[str, Any] = {"StringEquals": {"aws:SourceAccount": run.account}}
    if service == "sagemaker":
        jobs = (
            ["training-job/*", "hyper-parameter-tuning-job/*"] if role == run.stack.training_role else ["*"]
        )
        condition["ArnLike"] = {"aws:SourceArn": [run.arn("sagemaker", job) for job in jobs]}
    return _policy(
        {
            "Effect": "Allow",
            "Principal": {"Service": f"{service}.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": condition,
        }
    )


def _log_group(run: Run, group: str) -> str:
    return run.arn("logs", f"log-group:{group}")


def _ecr_pull(run: Run, image: str) -> list[dict[str, Any]]:
    return [
        _allow("RegistryLogin", ["ecr:GetAuthorizationToken"], ["*"]),
        _allow(
            "PullImage",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [run.arn("ecr", f"repository/{run.stack.repository(image)}")],
        ),
    ]


def _metrics(*namespaces: str) -> dict[str, Any]:
    condition = {"StringEquals": {"cloudwatch:namespace": list(namespaces)}}
    return _allow("PublishMetrics", ["cloudwatch:PutMetricData"], ["*"], Condition=condition)


def hosting_policy(run: Run) -> Policy:
    """The endpoint's role: pull the serving image, read model archives, write its one log group. A model
    made from a registry version needs nothing more: the version's image and archive are these."""
    stack = run.stack
    group = _log_group(run, stack.endpoint_log_group)
    return _policy(
        *_ecr_pull(run, "serve"),
        _allow(
            "ReadModel",
            ["s3:GetObject"],
            [
                f"arn:{run.partition}:s3:::{stack.bucket}/{stack.prefix}/models/*",
                f"arn:{run.partition}:s3:::{stack.bucket}/{stack.prefix}/training/*",
            ],
        ),
        _allow("WriteLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], [f"{group}:log-stream:*"]),
        _allow("DescribeLogs", ["logs:DescribeLogStreams"], [f"{group}:*"]),
        *async_statements(run),
        _metrics(ENDPOINT_METRICS, *([TRANSFORM_METRICS] if stack.transform else [])),
        *_data_capture(run),
        *_batch_transform(run),
        *_rollback_alarms(run),
    )


def _rollback_alarms(run: Run) -> list[dict[str, Any]]:
    """SageMaker reads the rollback alarms of a guarded rollout as the endpoint's role."""
    names = endpoint.rollback_alarms(run)
    arns = [run.arn("cloudwatch", f"alarm:{name}") for name in names]
    return [_allow("ReadRollbackAlarms", ["cloudwatch:DescribeAlarms"], arns)] if arns else []


def _data_capture(run: Run) -> list[dict[str, Any]]:
    """With data capture on, SageMaker writes the capture files as the hosting role: only there."""
    capture, stack = run.stack.endpoint.data_capture, run.stack
    if capture is None:
        return []
    prefix = f"arn:{run.partition}:s3:::{stack.bucket}/{stack.prefix}/{capture.prefix}/*"
    return [_allow("WriteDataCapture", ["s3:PutObject"], [prefix])]


def _batch_transform(run: Run) -> list[dict[str, Any]]:
    """With a [transform] table, the model's role also reads the transform input prefix and writes the
    output prefix (SageMaker's batch transform uses the model's role), and writes its jobs' logs."""
    stack = run.stack
    if stack.transform is None:
        return []
    base = f"{stack.prefix}/transform"
    group = _log_group(run, "/aws/sagemaker/TransformJobs")
    return [
        _allow(
            "ListTransformInput",
            ["s3:ListBucket"],
            [f"arn:{run.partition}:s3:::{stack.bucket}"],
            Condition={"StringLike": {"s3:prefix": [f"{base}/input/*"]}},
        ),
        _allow(
            "ReadTransformInput",
            ["s3:GetObject"],
            [f"arn:{run.partition}:s3:::{stack.bucket}/{base}/input/*"],
        ),
        _allow(
            "WriteTransformOutput",
            ["s3:PutObject"],
            [f"arn:{run.partition}:s3:::{stack.bucket}/{base}/output/*"],
        ),
        _allow("CreateTransformLogGroup", ["logs:CreateLogGroup"], [f"{group}:*"]),
        _allow(
            "WriteTransformLogs",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [f"{group}:log-stream:{stack.name}-*"],
        ),
    ]


def training_policy(run: Run) -> Policy:
    """Training and tuning jobs: pull the training image, read data, write outputs and checkpoints."""
    stack = run.stack
    objects = f"arn:{run.partition}:s3:::{stack.bucket}/{stack.prefix}"
    group = _log_group(run, "/aws/sagemaker/TrainingJobs")
    return _policy(
        *_ecr_pull(run, "train"),
        _allow(
            "ListOwnPrefix",
            ["s3:ListBucket"],
            [f"arn:{run.partition}:s3:::{stack.bucket}"],
            Condition={"StringLike": {"s3:prefix": [f"{stack.prefix}/*"]}},
        ),
        _allow("ReadData", ["s3:GetObject"], [f"{objects}/data/*", f"{objects}/checkpoints/*"]),
        _allow("WriteOutputs", ["s3:PutObject"], [f"{objects}/training/*", f"{objects}/checkpoints/*"]),
        _allow("CreateLogGroup", ["logs:CreateLogGroup"], [f"{group}:*"]),
        _allow(
            "WriteLogs",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [f"{group}:log-stream:{stack.name}-*"],
        ),
        _allow("DescribeLogs", ["logs:DescribeLogStreams"], [f"{group}:*"]),
        _metrics(TRAINING_METRICS),
    )


def lambda_policy(run: Run) -> Policy:
    """The proxy: invoke its one endpoint (ARN in lower case, as IAM matches it) and write its log group."""
    stack = run.stack
    group = _log_group(run, stack.lambda_log_group)
    return _policy(
        _allow(
            "InvokeEndpoint",
            ["sagemaker:InvokeEndpoint"],
            [run.arn("sagemaker", f"endpoint/{stack.endpoint_name.lower()}")],
        ),
        _allow("WriteLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], [f"{group}:log-stream:*"]),
    )


def boundary_policy(run: Run) -> Policy:
    """The most any role of this stack may do, whatever its endpoint kind and options: the document of
    the managed policy `permissions_boundary` names. It depends only on the stack's names, region, bucket
    and prefix, so an administrator creates it once; every role policy above stays inside it."""
    stack = run.stack
    bucket = f"arn:{run.partition}:s3:::{stack.bucket}"
    groups = (stack.endpoint_log_group, "/aws/sagemaker/TrainingJobs", "/aws/sagemaker/TransformJobs")
    topic_names = (topics.success_topic(stack), topics.error_topic(stack))
    return _policy(
        _allow("RegistryLogin", ["ecr:GetAuthorizationToken"], ["*"]),
        _allow(
            "PullImages",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [run.arn("ecr", f"repository/{stack.repository(image)}") for image in ("serve", "train")],
        ),
        _allow(
            "ListOwnPrefix",
            ["s3:ListBucket"],
            [bucket],
            Condition={"StringLike": {"s3:prefix": [f"{stack.prefix}/*"]}},
        ),
        _allow(
            "OwnObjects",
            ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            [f"{bucket}/{stack.prefix}/*"],
        ),
        _allow(
            "OwnLogs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            [f"{_log_group(run, group)}:*" for group in (*groups, stack.lambda_log_group)],
        ),
        _metrics(ENDPOINT_METRICS, TRAINING_METRICS, TRANSFORM_METRICS),
        _allow(
            "InvokeEndpoint",
            ["sagemaker:InvokeEndpoint"],
            [run.arn("sagemaker", f"endpoint/{stack.endpoint_name.lower()}")],
        ),
        _allow("Notify", ["sns:Publish"], [topics.topic_arn(run, name) for name in topic_names]),
        _allow(
            "ReadOwnAlarms",
            ["cloudwatch:DescribeAlarms"],
            [run.arn("cloudwatch", f"alarm:{alarms.prefix(stack)}*")],
        ),
    )


def boundary_arn(run: Run) -> str | None:
    name = run.stack.permissions_boundary
    return run.arn("iam", f"policy/{name}", region=False) if name else None


def _require_boundary(run: Run, arn: str) -> None:
    """A role cannot be bounded by a policy that does not exist: say who makes it, before any change."""
    iam = run.client("iam")
    try:
        iam.get_policy(PolicyArn=arn)
    except iam.exceptions.NoSuchEntityException:
        raise DeployError(
            f"permissions_boundary {run.stack.permissions_boundary} does not exist",
            "an administrator creates it once from the boundary document in docs/deploy.md "
            "(`aws iam create-policy`), then run the command again",
        ) from None


def roles(run: Run) -> list[tuple[str, str, Policy]]:
    """(role name, trusted service, inline policy) for every role `up` creates."""
    stack = run.stack
    return [
        (stack.hosting_role, "sagemaker", hosting_policy(run)),
        (stack.training_role, "sagemaker", training_policy(run)),
        *([(stack.lambda_role, "lambda", lambda_policy(run))] if stack.function else []),
    ]


def role_arn(run: Run, name: str) -> str:
    return run.arn("iam", f"role/{name}", region=False)


def _current(run: Run, name: str) -> tuple[dict | None, dict | None]:
    iam = run.client("iam")
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        return None, None
    try:
        policy = iam.get_role_policy(RoleName=name, PolicyName=POLICY_NAME)["PolicyDocument"]
    except iam.exceptions.NoSuchEntityException:
        policy = None
    if isinstance(policy, str):
        policy = json.loads(policy)
    return role, policy


def ensure_role(run: Run, name: str, service: str, policy: Policy) -> str:
    iam = run.client("iam")
    role, current = _current(run, name)
    trust = trust_policy(run, name, service)
    boundary = boundary_arn(run)
    bounded = f", bounded by {run.stack.permissions_boundary}" if boundary else ""
    if role is None:
        if boundary:
            _require_boundary(run, boundary)
        if run.apply("iam role", name, "create", f"assumed by {service} for this account{bounded}"):
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description=f"Kennel stack {run.stack.name}",
                Tags=run.tag_list(),
                **({"PermissionsBoundary": boundary} if boundary else {}),
            )
            iam.get_waiter("role_exists").wait(RoleName=name)
    elif _normalise(role["AssumeRolePolicyDocument"]) != trust:
        if run.apply("iam role", name, "update", "trust policy"):
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
    else:
        run.apply("iam role", name, "unchanged")
    if role is not None:
        _ensure_boundary(run, name, role, boundary)
    label = f"{name}/{POLICY_NAME}"
    if current == policy:
        run.apply("iam policy", label, "unchanged")
    elif run.apply("iam policy", label, "create" if current is None else "update"):
        iam.put_role_policy(RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy))
    return role_arn(run, name)


def _ensure_boundary(run: Run, name: str, role: dict, boundary: str | None) -> None:
    """An existing role gets the stack's boundary, or loses one the stack no longer names."""
    current = role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
    if current == boundary:
        return
    iam = run.client("iam")
    if boundary is None:
        if run.apply("iam role boundary", name, "delete", current):
            iam.delete_role_permissions_boundary(RoleName=name)
        return
    _require_boundary(run, boundary)
    if run.apply(
        "iam role boundary", name, "update" if current else "create", run.stack.permissions_boundary
    ):
        iam.put_role_permissions_boundary(RoleName=name, PermissionsBoundary=boundary)


def _normalise(document: Any) -> Any:
    return json.loads(document) if isinstance(document, str) else document


def delete_role(run: Run, name: str) -> None:
    iam = run.client("iam")
    role, _ = _current(run, name)
    if role is None or not run.apply("iam role", name, "delete"):
        return
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=policy)
    with contextlib.suppress(iam.exceptions.NoSuchEntityException):
        iam.delete_role(RoleName=name)


def async_statements(run: Run) -> list[dict[str, Any]]:
    """An async endpoint's extra grants: read its input prefix, write only its output and failure
    prefixes, publish only to its own topics. None for the other kinds."""
    settings = run.stack.endpoint.async_inference
    if settings is None:
        return []
    objects = f"arn:{run.partition}:s3:::{run.stack.bucket}/{run.stack.prefix}"
    statements = [
        _allow("ReadAsyncInput", ["s3:GetObject"], [f"{objects}/{settings.input_prefix}/*"]),
        _allow(
            "WriteAsyncResults",
            ["s3:AbortMultipartUpload", "s3:PutObject"],
            [f"{objects}/{settings.output_prefix}/*", f"{objects}/{settings.failure_prefix}/*"],
        ),
    ]
    names = topics.wanted(run.stack)
    if names:
        statements.append(_allow("Notify", ["sns:Publish"], [topics.topic_arn(run, name) for name in names]))
    return statements
