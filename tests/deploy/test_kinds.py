"""Endpoint kinds against moto over HTTP: a serverless and an async stack go up, stay unchanged on a
second `up`, report their kind, come down; `invoke --async` waits for the result object."""

import json
import urllib.request

import boto3
import pytest

from deploy import cli, dashboard, endpoint, iam, lifecycle
from deploy.aws import DeployError
from tests.deploy.conftest import INSTANCE_ALARMS, LAMBDA_ALARMS, drop_alarms

SAGEMAKER_ENDPOINTS = "AWS/SageMaker"


@pytest.fixture
def serverless_doc(stack_doc: dict) -> dict:
    endpoint = stack_doc["endpoint"]
    for key in (
        "instance_type",
        "instance_count",
        "startup_health_check_timeout_seconds",
        "model_download_timeout_seconds",
    ):
        del endpoint[key]
    endpoint["kind"] = "serverless"
    endpoint["serverless"] = {"memory_size_mb": 2048, "max_concurrency": 5, "provisioned_concurrency": 1}
    del stack_doc["autoscaling"]
    return drop_alarms(stack_doc, INSTANCE_ALARMS)


@pytest.fixture
def async_doc(stack_doc: dict) -> dict:
    stack_doc["endpoint"]["kind"] = "async"
    stack_doc["endpoint"]["async"] = {
        "input_prefix": "async/input",
        "output_prefix": "async/output",
        "failure_prefix": "async/failures",
        "success_topic": True,
        "error_topic": True,
        "max_concurrent_invocations_per_instance": 4,
        "max_payload_mb": 32,
    }
    scaling = stack_doc["autoscaling"]
    del scaling["target_invocations_per_instance"]
    scaling.update(min_instances=0, max_instances=3, target_backlog_per_instance=5)
    del stack_doc["lambda"]
    return drop_alarms(stack_doc, LAMBDA_ALARMS)


def live_config() -> dict:
    sagemaker = boto3.client("sagemaker")
    name = sagemaker.describe_endpoint(EndpointName="kennel-endpoint")["EndpointConfigName"]
    return sagemaker.describe_endpoint_config(EndpointConfigName=name)


def scaling_policies() -> dict[str, dict]:
    listed = boto3.client("application-autoscaling").describe_scaling_policies(ServiceNamespace="sagemaker")
    return {p["PolicyName"]: p for p in listed["ScalingPolicies"]}


def topic_names() -> set[str]:
    return {t["TopicArn"].rsplit(":", 1)[1] for t in boto3.client("sns").list_topics()["Topics"]}


def assert_down_removes_everything(make_run, path) -> None:
    removed = lifecycle.down(make_run(path=path))
    assert {c.action for c in removed.changes} == {"delete"}
    sagemaker = boto3.client("sagemaker")
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    aas = boto3.client("application-autoscaling")
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert scaling_policies() == {}
    assert boto3.client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    assert topic_names() == set()
    assert boto3.client("iam").list_roles()["Roles"] == []
    assert boto3.client("lambda").list_functions()["Functions"] == []
    assert lifecycle.down(make_run(path=path)).changes == []


def test_serverless_stack_up_is_idempotent_and_down_removes_it(make_run, serverless_doc, write_stack):
    path = write_stack(serverless_doc)
    planned = lifecycle.up(make_run(dry_run=True, path=path))
    done = lifecycle.up(make_run(path=path))
    assert [(c.kind, c.action) for c in planned.changes] == [(c.kind, c.action) for c in done.changes]

    (variant,) = live_config()["ProductionVariants"]
    assert variant["ServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 5,
        "ProvisionedConcurrency": 1,
    }
    assert "InstanceType" not in variant and "ContainerStartupHealthCheckTimeoutInSeconds" not in variant
    aas = boto3.client("application-autoscaling")
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    # The proxy serves a serverless endpoint as it serves a real-time one.
    live = boto3.client("lambda").get_function_configuration(FunctionName="kennel-proxy", Qualifier="live")
    assert live["Environment"]["Variables"]["SAGEMAKER_ENDPOINT_NAME"] == "kennel-endpoint"

    assert lifecycle.up(make_run(path=path)).changed() == []
    status = lifecycle.status(make_run(path=path))
    assert "  kind: serverless (stack file: serverless)" in status
    assert "  serverless: 2048 MB, max concurrency 5, provisioned 1" in status
    assert_down_removes_everything(make_run, path)


def test_async_stack_up_creates_queue_scaling_wake_up_and_topics(make_run, async_doc, write_stack):
    path = write_stack(async_doc)
    planned = lifecycle.up(make_run(dry_run=True, path=path))
    done = lifecycle.up(make_run(path=path))
    assert [(c.kind, c.action) for c in planned.changes] == [(c.kind, c.action) for c in done.changes]

    config = live_config()
    topics = {
        "SuccessTopic": "arn:aws:sns:us-east-1:123456789012:kennel-async-success",
        "ErrorTopic": "arn:aws:sns:us-east-1:123456789012:kennel-async-errors",
    }
    assert config["AsyncInferenceConfig"] == {
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
        "OutputConfig": {
            "S3OutputPath": "s3://kennel-example-data/kennel/async/output",
            "S3FailurePath": "s3://kennel-example-data/kennel/async/failures",
            "NotificationConfig": topics,
        },
    }
    assert topic_names() == {"kennel-async-success", "kennel-async-errors"}
    model = boto3.client("sagemaker").describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["Environment"] == {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "32"}

    aas = boto3.client("application-autoscaling")
    (target,) = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 3)
    policies = scaling_policies()
    assert set(policies) == {"kennel-backlog-per-instance", "kennel-wake-on-backlog"}
    tracking = policies["kennel-backlog-per-instance"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 5
    assert tracking["CustomizedMetricSpecification"] == {
        "MetricName": "ApproximateBacklogSizePerInstance",
        "Namespace": SAGEMAKER_ENDPOINTS,
        "Dimensions": [{"Name": "EndpointName", "Value": "kennel-endpoint"}],
        "Statistic": "Average",
    }
    wake = policies["kennel-wake-on-backlog"]
    assert wake["PolicyType"] == "StepScaling"
    assert wake["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}
    ]
    # The stack's [alarms] are there too; the wake-up alarm is the one on the queue.
    alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    (alarm,) = [a for a in alarms if a.get("MetricName") == "HasBacklogWithoutCapacity"]
    assert (alarm["MetricName"], alarm["Namespace"]) == ("HasBacklogWithoutCapacity", SAGEMAKER_ENDPOINTS)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1.0, "GreaterThanOrEqualToThreshold")
    assert alarm["AlarmActions"] == [wake["PolicyARN"]]
    assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": "kennel-endpoint"}]

    # No proxy for an async endpoint, and so no Lambda role.
    assert boto3.client("lambda").list_functions()["Functions"] == []
    roles = {r["RoleName"] for r in boto3.client("iam").list_roles()["Roles"]}
    assert roles == {"kennel-sagemaker-hosting", "kennel-sagemaker-training"}

    assert lifecycle.up(make_run(path=path)).changed() == []
    status = lifecycle.status(make_run(path=path))
    assert "  kind: async (stack file: async)" in status
    assert "  scaling: 0..3 instances" in status
    assert any(line.startswith("  wake-up: policy present, alarm kennel-has-backlog") for line in status)
    assert_down_removes_everything(make_run, path)


def test_dropping_a_topic_plans_its_removal_a_new_config_and_a_narrower_grant(
    make_run, async_doc, write_stack
):
    lifecycle.up(make_run(path=write_stack(async_doc)))
    async_doc["endpoint"]["async"]["success_topic"] = False
    run = make_run(dry_run=True, path=write_stack(async_doc, "no-success.toml"))
    planned = {(c.kind, c.action) for c in lifecycle.up(run).changed()}
    # moto cannot update an endpoint (tests/deploy/test_stubbed.py covers the update itself)
    assert planned == {
        ("iam policy", "update"),
        ("sns topic", "delete"),
        ("endpoint config", "create"),
        ("endpoint", "update"),
        ("endpoint config", "delete"),
    }
    (notify,) = [s for s in iam.hosting_policy(run)["Statement"] if s["Sid"] == "Notify"]
    assert notify["Resource"] == ["arn:aws:sns:us-east-1:123456789012:kennel-async-errors"]


def queue_async_result(moto_url: str, data: str, failure: bool = False) -> None:
    body = {"account_id": "123456789012", "region": "us-east-1", "results": [{"data": data}]}
    if failure:
        body["results"][0]["is_failure"] = True
    request = urllib.request.Request(
        f"{moto_url}/moto-api/static/sagemaker/async-endpoint-results",
        data=json.dumps(body).encode(),
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()


def test_invoke_async_uploads_the_image_and_prints_the_result_object(
    make_run, async_doc, write_stack, tmp_path, capsys, aws
):
    path = write_stack(async_doc)
    lifecycle.up(make_run(path=path))
    predictions = {"predictions": [[{"label": "001.Affenpinscher", "probability": 0.93}]]}
    queue_async_result(aws, json.dumps(predictions))
    image = tmp_path / "dog.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 a large phone photo, in spirit")
    capsys.readouterr()
    assert cli.main(["invoke", "--stack", str(path), "--async", str(image)]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1]) == predictions
    uploaded = boto3.client("s3").list_objects_v2(Bucket="kennel-example-data", Prefix="kennel/async/input/")
    (obj,) = uploaded["Contents"]
    assert obj["Key"].endswith(".jpg") and obj["Size"] == len(image.read_bytes())


def test_invoke_async_reports_the_failure_object(make_run, async_doc, write_stack, tmp_path, capsys, aws):
    path = write_stack(async_doc)
    lifecycle.up(make_run(path=path))
    queue_async_result(aws, '{"error": "unsupported_media_type"}', failure=True)
    image = tmp_path / "dog.gif"
    image.write_bytes(b"GIF89a")
    assert cli.main(["invoke", "--stack", str(path), "--async", str(image)]) == 1
    assert "unsupported_media_type" in capsys.readouterr().err


def test_invoke_async_on_a_realtime_stack_says_what_to_set(stack_file, tmp_path, capsys):
    image = tmp_path / "dog.jpg"
    image.write_bytes(b"\xff\xd8")
    assert cli.main(["invoke", "--stack", str(stack_file), "--async", str(image)]) == 1
    assert 'needs [endpoint] kind = "async"' in capsys.readouterr().err


def test_realtime_to_serverless_is_refused_before_anything_changes(make_run, serverless_doc, write_stack):
    realtime = make_run()
    lifecycle.up(realtime)
    before = live_config()["EndpointConfigName"]
    with pytest.raises(DeployError, match="cannot update an instance-based endpoint to serverless") as err:
        lifecycle.up(make_run(path=write_stack(serverless_doc, "serverless.toml")))
    assert "down" in err.value.reason
    assert live_config()["EndpointConfigName"] == before
    assert len(boto3.client("sagemaker").list_endpoint_configs()["EndpointConfigs"]) == 1


def test_async_hosting_policy_reads_its_input_and_writes_only_its_prefixes(make_run, async_doc, write_stack):
    run = make_run(dry_run=True, path=write_stack(async_doc))
    grants = {
        (action, resource)
        for statement in iam.hosting_policy(run)["Statement"]
        if statement["Sid"] in {"ReadAsyncInput", "WriteAsyncResults", "Notify"}
        for action in statement["Action"]
        for resource in statement["Resource"]
    }
    objects = "arn:aws:s3:::kennel-example-data/kennel/async"
    topics = "arn:aws:sns:us-east-1:123456789012:kennel-async"
    assert grants == {
        ("s3:GetObject", f"{objects}/input/*"),
        ("s3:PutObject", f"{objects}/output/*"),
        ("s3:PutObject", f"{objects}/failures/*"),
        ("s3:AbortMultipartUpload", f"{objects}/output/*"),
        ("s3:AbortMultipartUpload", f"{objects}/failures/*"),
        ("sns:Publish", f"{topics}-success"),
        ("sns:Publish", f"{topics}-errors"),
    }
    assert [name for name, _, _ in iam.roles(run)] == [
        "kennel-sagemaker-hosting",
        "kennel-sagemaker-training",
    ]


def test_switching_realtime_to_async_plans_a_blue_green_update_and_clears_the_proxy(
    make_run, async_doc, write_stack
):
    lifecycle.up(make_run())
    planned = lifecycle.up(make_run(dry_run=True, path=write_stack(async_doc, "async.toml")))
    changed = {(c.kind, c.name, c.action) for c in planned.changed()}
    assert ("endpoint", "kennel-endpoint", "update") in changed
    assert ("scaling policy", "kennel-invocations-per-instance", "delete") in changed
    assert ("scaling policy", "kennel-backlog-per-instance", "create") in changed
    assert ("scaling policy", "kennel-wake-on-backlog", "create") in changed
    assert ("sns topic", "kennel-async-success", "create") in changed
    assert ("iam role", "kennel-lambda-proxy", "delete") in changed
    assert ("lambda function", "kennel-proxy", "delete") in changed
    assert ("log group", "/aws/lambda/kennel-proxy", "delete") in changed
    (update,) = [c for c in planned.changes if c.kind == "endpoint"]
    assert update.detail.startswith("blue/green kennel-config-")


def test_serverless_to_realtime_plans_a_blue_green_update_with_the_configs_instance_count(
    make_run, serverless_doc, write_stack, stack_file
):
    lifecycle.up(make_run(path=write_stack(serverless_doc, "serverless.toml")))
    realtime = make_run(dry_run=True, path=stack_file)
    current = boto3.client("sagemaker").describe_endpoint(EndpointName="kennel-endpoint")
    # A serverless variant has no instance type, so the update takes the new config's instance count.
    assert endpoint.instance_type_changes(realtime, current) is True
    changed = {(c.kind, c.action) for c in lifecycle.up(realtime).changed()}
    assert {("endpoint", "update"), ("scalable target", "create"), ("scaling policy", "create")} <= changed


def widget_titles(run) -> list[str]:
    return [w["properties"].get("title") for w in dashboard.body(run)["widgets"]]


def test_the_dashboard_shows_what_each_kind_has(make_run, stack_file, serverless_doc, write_stack):
    realtime = widget_titles(make_run(dry_run=True, path=stack_file))
    serverless = widget_titles(make_run(dry_run=True, path=write_stack(serverless_doc)))

    assert "Endpoint instances" in realtime and "Lambda duration (ms)" in realtime
    assert "Endpoint instances" not in serverless and not any("CPU" in t for t in serverless)
    assert "Lambda duration (ms)" in serverless
    latency = next(
        w
        for w in dashboard.body(make_run(dry_run=True, path=write_stack(serverless_doc)))["widgets"]
        if w["properties"].get("title") == "Model latency (microseconds)"
    )
    assert any(series[1] == "ModelSetupTime" for series in latency["properties"]["metrics"])


def test_an_async_dashboard_shows_the_queue_and_no_proxy(make_run, async_doc, write_stack):
    body = dashboard.body(make_run(dry_run=True, path=write_stack(async_doc)))
    titles = [w["properties"].get("title") for w in body["widgets"]]
    metrics = {series[1] for w in body["widgets"] for series in w["properties"].get("metrics", [])}

    assert not any(t and t.startswith("Lambda") for t in titles)
    assert {"ApproximateBacklogSizePerInstance", "ApproximateBacklogSize"} <= metrics
    assert "Errors" not in metrics  # the Lambda's
