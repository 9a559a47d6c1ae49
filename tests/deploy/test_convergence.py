"""A deploy that fails half way leaves nothing behind and converges on the next run.

`up` of the example stack (alarms with their e-mail topic, the Lambda, auto-scaling, a role boundary) is
made to fail at each of its AWS calls in turn, k = 1..N, against moto over HTTP: the k-th call answers
500 InternalFailure before it reaches moto. From each failed state, a second `up` must end in exactly the
state a clean `up` gives, read back through the AWS APIs; and, from the same failed state reached again,
`down` must leave nothing of the stack but its bucket (which `down` keeps by design). Then the same for
`down` failing at each of its calls, followed by `down` again; `up` whose call k took effect but whose
answer was lost (a read timeout), followed by `up` again; and an async stack's up failing at each of the
calls only it makes. One moto server, reset between points.

Every point checks that the run stopped at its failed call with an error and changed nothing after it.
A run stopped at a read leaves the same state as one stopped at the write before it, so the up sweep runs
the checks that follow once per distinct failed state (`writes_before`).
"""

import functools
import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ReadTimeoutError

from deploy import iam, lifecycle
from deploy import stack as stack_module
from deploy.aws import Publisher, Run
from tests.deploy.conftest import LAMBDA_ALARMS, drop_alarms, record_in_ecr
from tests.deploy.test_kinds_stack import ASYNC

BOUNDARY = "kennel-role-boundary"
# Fields that differ between two clean runs of the same stack: times, generated ids, request ids.
VOLATILE = {
    "ResponseMetadata",
    "CreationTime",
    "LastModifiedTime",
    "LastModified",
    "CreateDate",
    "createdAt",
    "creationTime",
    "imagePushedAt",
    "RoleId",
    "RoleLastUsed",
    "RevisionId",
    "StateUpdatedTimestamp",
    "StateTransitionedTimestamp",
    "AlarmConfigurationUpdatedTimestamp",
    "StateReasonData",
    "LastUpdateStatusReason",
    "FunctionUrl",
    "ScalableTargetARN",
    "PolicyARN",
}


class Injector:
    """Counts every AWS call of the clients made after it is installed and makes call `fail_at` fail:
    by default it answers 500 InternalFailure without being sent (as AWS does when it fails a request);
    with `lost_answer`, it is sent and done, and its answer times out instead (a dropped connection)."""

    def __init__(self, session: boto3.Session) -> None:
        self.calls: list[str] = []
        self.fail_at: int | None = None
        self.lost_answer = False
        session.events.register("before-call", self._before_call)
        session.events.register("after-call", self._after_call)

    def arm(self, fail_at: int | None, lost_answer: bool = False) -> None:
        self.calls, self.fail_at, self.lost_answer = [], fail_at, lost_answer

    def _after_call(self, **kwargs) -> None:
        if self.lost_answer and len(self.calls) == self.fail_at:
            raise ReadTimeoutError(endpoint_url="https://injected.invalid")

    def _before_call(self, model, **kwargs) -> tuple[AWSResponse, dict] | None:
        self.calls.append(f"{model.service_model.service_name}.{model.name}")
        if len(self.calls) != self.fail_at or self.lost_answer:
            return None
        error = {"Code": "InternalFailure", "Message": f"injected at call {self.fail_at}"}
        return AWSResponse("https://injected.invalid", 500, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 500},
        }


def _post(url: str, body: dict | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else b""
    urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=10).read()


# A scaling policy's ARN carries an id drawn at creation; alarms that act on it name it.
POLICY_ID = re.compile(r"scalingPolicy:[0-9a-f-]{36}:")


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if isinstance(value, str):
        return POLICY_ID.sub("scalingPolicy:(id):", value)
    return value


def snapshot(client: Callable[[str], Any] = boto3.client) -> dict[str, Any]:
    """Every resource in the account that `up` can make, with its configuration and tags."""
    s3, ecr, logs, iam_client = (client(s) for s in ("s3", "ecr", "logs", "iam"))
    sagemaker, aas, aws_lambda = (client(s) for s in ("sagemaker", "application-autoscaling", "lambda"))
    sns, cloudwatch = client("sns"), client("cloudwatch")
    state: dict[str, Any] = {}
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        state[f"s3 bucket {bucket}"] = {
            "public access": _or_none(s3.get_public_access_block, bucket),
            "tags": _or_none(s3.get_bucket_tagging, bucket),
            "objects": sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])),
        }
    for repo in ecr.describe_repositories()["repositories"]:
        name = repo["repositoryName"]
        state[f"ecr {name}"] = {
            **repo,
            "lifecycle": ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"],
            "images": [i.get("imageTags") for i in ecr.describe_images(repositoryName=name)["imageDetails"]],
            "tags": ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"],
        }
    for group in logs.describe_log_groups()["logGroups"]:
        name = group["logGroupName"]
        state[f"log group {name}"] = {**group, "tags": logs.list_tags_log_group(logGroupName=name)["tags"]}
    for role in iam_client.list_roles()["Roles"]:
        name = role["RoleName"]
        policies = iam_client.list_role_policies(RoleName=name)["PolicyNames"]
        state[f"iam role {name}"] = {
            **iam_client.get_role(RoleName=name)["Role"],
            "inline": {p: iam_client.get_role_policy(RoleName=name, PolicyName=p) for p in policies},
        }
    for model in sagemaker.list_models()["Models"]:
        described = sagemaker.describe_model(ModelName=model["ModelName"])
        tags = sagemaker.list_tags(ResourceArn=described["ModelArn"])["Tags"]
        state[f"sagemaker model {model['ModelName']}"] = {**described, "tags": tags}
    for config in sagemaker.list_endpoint_configs()["EndpointConfigs"]:
        described = sagemaker.describe_endpoint_config(EndpointConfigName=config["EndpointConfigName"])
        tags = sagemaker.list_tags(ResourceArn=described["EndpointConfigArn"])["Tags"]
        state[f"endpoint config {config['EndpointConfigName']}"] = {**described, "tags": tags}
    for endpoint in sagemaker.list_endpoints()["Endpoints"]:
        described = sagemaker.describe_endpoint(EndpointName=endpoint["EndpointName"])
        tags = sagemaker.list_tags(ResourceArn=described["EndpointArn"])["Tags"]
        state[f"endpoint {endpoint['EndpointName']}"] = {**described, "tags": tags}
    # moto answers 500 to Application Auto Scaling's ListTagsForResource: targets without their tags.
    for target in aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]:
        state[f"scalable target {target['ResourceId']}"] = target
    for policy in aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]:
        state[f"scaling policy {policy['PolicyName']}"] = {**policy, "Alarms": None}
    for fn in aws_lambda.list_functions()["Functions"]:
        name = fn["FunctionName"]
        aliases = aws_lambda.list_aliases(FunctionName=name)["Aliases"]
        state[f"lambda {name}"] = {
            "configuration": aws_lambda.get_function_configuration(FunctionName=name),
            "versions": aws_lambda.list_versions_by_function(FunctionName=name)["Versions"],
            "aliases": aliases,
            "concurrency": aws_lambda.get_function_concurrency(FunctionName=name),
            "urls": [_url(aws_lambda, name, a["Name"]) for a in aliases],
            "tags": aws_lambda.list_tags(Resource=fn["FunctionArn"])["Tags"],
        }
    for topic in sns.list_topics()["Topics"]:
        arn = topic["TopicArn"]
        subscriptions = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
        state[f"sns topic {arn}"] = {
            "subscriptions": sorted((s["Protocol"], s["Endpoint"]) for s in subscriptions),
            "tags": sns.list_tags_for_resource(ResourceArn=arn)["Tags"],
        }
    for alarm in cloudwatch.describe_alarms()["MetricAlarms"]:
        tags = cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
        state[f"alarm {alarm['AlarmName']}"] = {**alarm, "tags": tags}
    for board in cloudwatch.list_dashboards()["DashboardEntries"]:
        body = cloudwatch.get_dashboard(DashboardName=board["DashboardName"])["DashboardBody"]
        state[f"dashboard {board['DashboardName']}"] = json.loads(body)
    return _strip(state)


def _or_none(read: Callable[..., dict], bucket: str) -> dict | None:
    """A bucket setting, or None when S3 answers that it has none."""
    try:
        return read(Bucket=bucket)
    except ClientError as err:
        if err.response["Error"]["Code"] in ("NoSuchPublicAccessBlockConfiguration", "NoSuchTagSet"):
            return None
        raise


def _url(aws_lambda: Any, name: str, alias: str) -> dict | None:
    """moto has no ListFunctionUrlConfigs: each alias's URL configuration, or None."""
    try:
        return aws_lambda.get_function_url_config(FunctionName=name, Qualifier=alias)
    except aws_lambda.exceptions.ResourceNotFoundException:
        return None


def leftovers(state: dict[str, Any], bucket: str) -> dict[str, Any]:
    """What `down` left of the stack: anything but the bucket, which it keeps, and objects in the bucket."""
    left = {key: value for key, value in state.items() if key != f"s3 bucket {bucket}"}
    if state.get(f"s3 bucket {bucket}", {}).get("objects"):
        left["objects"] = state[f"s3 bucket {bucket}"]["objects"]
    return left


def is_read(call: str) -> bool:
    return call.split(".", 1)[1].startswith(("Describe", "Get", "List", "Head"))


class Stage:
    """One stack against one moto server, reset between points. The clients are made once (after the
    injector, so they carry it) and shared by every run and every read-back."""

    def __init__(self, moto_url: str, path: Path, session: boto3.Session) -> None:
        self.moto_url, self.path = moto_url, path
        self.injector = Injector(session)
        self.clients: dict[str, Any] = {}
        self.stack = stack_module.load(path)

    def client(self, service: str) -> Any:
        return self.run().client(service)

    def run(self, publish: Publisher | None = None) -> Run:
        return Run(self.stack, poll_seconds=0, say=lambda line: None, clients=self.clients, publish=publish)

    def fresh(self) -> None:
        """An empty account but for the boundary policy, which an administrator creates once."""
        self.injector.arm(None)
        _post(f"{self.moto_url}/moto-api/reset")
        _post(f"{self.moto_url}/moto-api/config", {"lambda": {"use_docker": False}})
        self.client("iam").create_policy(
            PolicyName=BOUNDARY, PolicyDocument=json.dumps(iam.boundary_policy(self.run()))
        )
        self.injector.arm(None)

    def up(self) -> Run:
        return lifecycle.up(self.run(publish=functools.partial(record_in_ecr, client=self.client("ecr"))))

    def down(self) -> Run:
        return lifecycle.down(self.run())

    def fails_at(self, k: int, action: Callable[[], Any], lost_answer: bool = False) -> str | None:
        """Runs `action` with call k failing; the call's name when `action` stopped there with an error,
        else None: it went on as if the call had worked, or changed something after it (reading, as a
        failed wait does to report the reason, is fine)."""
        self.injector.arm(k, lost_answer)
        try:
            action()
        except Exception:  # the injected error, as a ClientError, WaiterError or DeployError
            calls = self.injector.calls
            return calls[k - 1] if all(is_read(call) for call in calls[k:]) else None
        finally:
            self.injector.arm(None)
        return None

    def snapshot(self) -> dict[str, Any]:
        return snapshot(self.client)

    def leftovers(self) -> dict[str, Any]:
        return leftovers(self.snapshot(), self.stack.bucket)


@pytest.fixture
def stage(aws: str, stack_doc: dict, write_stack, session: boto3.Session) -> Stage:
    stack_doc["permissions_boundary"] = BOUNDARY
    stack_doc["alarms"]["email"] = "oncall@example.com"
    return Stage(aws, write_stack(stack_doc), session)


@pytest.fixture
def async_stage(aws: str, stack_doc: dict, write_stack, session: boto3.Session) -> Stage:
    """An async stack: its SNS topics, queue-based scaling and the wake-up policy and alarm."""
    stack_doc["permissions_boundary"] = BOUNDARY
    stack_doc["endpoint"].update(kind="async", **{"async": dict(ASYNC, error_topic=True)})
    scaling = stack_doc["autoscaling"]
    del scaling["target_invocations_per_instance"]
    scaling.update(min_instances=0, target_backlog_per_instance=5)
    del stack_doc["lambda"]
    return Stage(aws, write_stack(drop_alarms(stack_doc, LAMBDA_ALARMS)), session)


def writes_before(calls: list[str], k: int) -> int:
    """How many calls before call k could change anything. A run stopped at call k leaves the state its
    writes made, so two points with the same count leave the same state (the reads in between change
    nothing): the checks that follow need to run for the first of them only."""
    return sum(not is_read(call) for call in calls[: k - 1])


def next_up_differs(stage, clean: dict, point: str) -> list[str]:
    """Runs up again after a failed one: nothing when it ends in the clean up's state, else what differs."""
    stage.up()
    got = stage.snapshot()
    return [] if got == clean else [f"{point}: the next up ends elsewhere: {diff(clean, got)}"]


def test_up_failing_at_any_call_converges_on_the_next_up_and_down_removes_it(stage):
    stage.fresh()
    stage.up()
    calls = list(stage.injector.calls)
    clean = stage.snapshot()
    assert stage.up().changed() == []

    wrong: list[str] = []
    checked: dict[int, int] = {}
    for k in range(1, len(calls) + 1):
        stage.fresh()
        call = stage.fails_at(k, stage.up)
        if call is None:
            wrong.append(f"call {k} ({calls[k - 1]}): up did not stop there with an error")
            continue
        if checked.setdefault(writes_before(calls, k), k) != k:
            continue
        wrong += next_up_differs(stage, clean, f"call {k} ({call})")
        stage.fresh()
        stage.fails_at(k, stage.up)
        stage.down()
        left = stage.leftovers()
        if left:
            wrong.append(f"call {k} ({call}): down from the failed state left {sorted(left)}")
    print(f"up: {len(calls)} injected-failure points, {len(checked)} distinct failed states")
    assert wrong == [], "\n".join(wrong)


def test_up_that_loses_the_answer_to_any_call_converges_on_the_next_up(stage):
    """Call k reaches AWS and takes effect, but its answer is lost: the next up must see what the call
    did, not do it twice. The state left is that of the writes up to and including call k, so each
    distinct one is checked once."""
    stage.fresh()
    stage.up()
    calls = list(stage.injector.calls)
    clean = stage.snapshot()
    wrong: list[str] = []
    checked: dict[int, int] = {}
    for k in range(1, len(calls) + 1):
        if checked.setdefault(writes_before(calls, k + 1), k) != k:
            continue
        stage.fresh()
        call = stage.fails_at(k, stage.up, lost_answer=True)
        if call is None:
            wrong.append(f"call {k} ({calls[k - 1]}): up did not stop there with an error")
            continue
        wrong += next_up_differs(stage, clean, f"call {k} ({call})")
    print(f"up, answers lost: {len(calls)} points, {len(checked)} distinct states")
    assert wrong == [], "\n".join(wrong)


# Where an async stack's up differs from the example's: its topics, queue scaling, wake-up policy and alarm.
ASYNC_SERVICES = ("sns.", "application-autoscaling.", "cloudwatch.")


def test_an_async_stack_failing_at_its_own_calls_converges_on_the_next_up(async_stage):
    """The example's sweep covers the calls every kind makes; here the SNS, Application Auto Scaling and
    CloudWatch calls of an async stack's up fail in turn."""
    stage = async_stage
    stage.fresh()
    stage.up()
    calls = list(stage.injector.calls)
    points = [k for k, call in enumerate(calls, 1) if call.startswith(ASYNC_SERVICES)]
    clean = stage.snapshot()
    wrong: list[str] = []
    for k in points:
        stage.fresh()
        call = stage.fails_at(k, stage.up)
        if call is None:
            wrong.append(f"call {k} ({calls[k - 1]}): up did not stop there with an error")
            continue
        wrong += next_up_differs(stage, clean, f"call {k} ({call})")
    print(f"async up: {len(points)} injected-failure points of {len(calls)} calls")
    assert wrong == [], "\n".join(wrong)


def test_down_failing_at_any_call_is_finished_by_the_next_down(stage):
    stage.fresh()
    stage.up()
    stage.injector.arm(None)
    stage.down()
    calls = list(stage.injector.calls)
    assert stage.leftovers() == {}

    wrong: list[str] = []
    for k in range(1, len(calls) + 1):
        stage.fresh()
        stage.up()
        call = stage.fails_at(k, stage.down)
        if call is None:
            wrong.append(f"call {k} ({calls[k - 1]}): down did not stop there with an error")
            continue
        stage.down()
        left = stage.leftovers()
        if left:
            wrong.append(f"call {k} ({call}): the next down left {sorted(left)}")
    print(f"down: {len(calls)} injected-failure points")
    assert wrong == [], "\n".join(wrong)


def diff(want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """The resources that differ, by name: missing, extra or configured otherwise."""
    out = [f"missing {key}" for key in sorted(set(want) - set(got))]
    out += [f"extra {key}" for key in sorted(set(got) - set(want))]
    out += [f"changed {key}" for key in sorted(set(want) & set(got)) if want[key] != got[key]]
    return out
