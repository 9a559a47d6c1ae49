"""Operating the stack against moto over HTTP: the proxy's request settings in the function's
configuration, alarms, the alert topic, the dashboard and data capture, put by `up`, unchanged by a
second `up`, removed by `down`, and target tracking's own alarms left alone."""

import copy
import json

import boto3
import pytest
from parliament import analyze_policy_string

from deploy import alarms, dashboard, endpoint_config, iam, lifecycle

EMAIL = "oncall@example.com"
# What real target tracking creates next to a scaling policy; moto does not, so the tests put one.
TARGET_TRACKING_ALARM = "TargetTracking-endpoint/kennel-endpoint/variant/AllTraffic-AlarmHigh-0a1b2c"
EXAMPLE_ALARMS = {
    "kennel-alarm-endpoint-5xx-rate",
    "kennel-alarm-endpoint-4xx-rate",
    "kennel-alarm-endpoint-latency-p99",
    "kennel-alarm-endpoint-cpu",
    "kennel-alarm-endpoint-at-max-instances",
    "kennel-alarm-lambda-errors",
    "kennel-alarm-lambda-throttles",
    "kennel-alarm-lambda-duration",
}


@pytest.fixture
def operated_doc(stack_doc: dict) -> dict:
    """The example stack with every operations key set: URL hosts, image cap, CORS, capture, e-mail."""
    doc = copy.deepcopy(stack_doc)
    doc["lambda"].update(
        allowed_url_hosts=["s3.amazonaws.com", "Images.Example.com:8443"],
        max_image_bytes=4194304,
        cors_allow_origins=["https://app.example.com"],
    )
    doc["endpoint"]["data_capture"] = {"sampling_percentage": 25, "prefix": "capture"}
    doc["alarms"]["email"] = EMAIL
    return doc


@pytest.fixture
def operated(operated_doc: dict, write_stack):
    return write_stack(operated_doc, "operated.toml")


def put_target_tracking_alarm() -> None:
    boto3.client("cloudwatch").put_metric_alarm(
        AlarmName=TARGET_TRACKING_ALARM,
        Namespace="AWS/SageMaker",
        MetricName="InvocationsPerInstance",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=3,
        Threshold=600.0,
        ComparisonOperator="GreaterThanThreshold",
    )


def alarms_by_name() -> dict[str, dict]:
    return {a["AlarmName"]: a for a in boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]}


def test_up_writes_the_proxy_settings_into_the_function_configuration(make_run, operated):
    planned = lifecycle.up(make_run(dry_run=True, path=operated))
    lifecycle.up(make_run(path=operated))

    live = boto3.client("lambda").get_function_configuration(FunctionName="kennel-proxy", Qualifier="live")
    variables = live["Environment"]["Variables"]
    assert variables["KENNEL_ALLOWED_URL_HOSTS"] == "s3.amazonaws.com,images.example.com:8443"
    assert variables["KENNEL_MAX_IMAGE_BYTES"] == "4194304"
    assert variables["KENNEL_CORS_ALLOW_ORIGINS"] == "https://app.example.com"
    (created,) = [c for c in planned.changes if c.kind == "lambda function"]
    assert "URL hosts: s3.amazonaws.com, images.example.com:8443" in created.detail
    assert "CORS origins: https://app.example.com" in created.detail


def test_removing_the_allow_list_takes_it_out_of_the_function(make_run, operated, operated_doc, write_stack):
    lifecycle.up(make_run(path=operated))
    del operated_doc["lambda"]["allowed_url_hosts"]
    without = write_stack(operated_doc, "without.toml")
    planned = lifecycle.up(make_run(dry_run=True, path=without))
    done = lifecycle.up(make_run(path=without))

    (update,) = [c for c in done.changed() if c.kind == "lambda configuration"]
    assert "URL hosts: none (URL bodies refused)" in update.detail
    assert [(c.kind, c.action) for c in planned.changes] == [(c.kind, c.action) for c in done.changes]
    live = boto3.client("lambda").get_function_configuration(FunctionName="kennel-proxy", Qualifier="live")
    assert "KENNEL_ALLOWED_URL_HOSTS" not in live["Environment"]["Variables"]


def test_alarms_exist_as_the_stack_file_says(make_run, operated):
    run = lifecycle.up(make_run(path=operated))
    found = alarms_by_name()
    topic = "arn:aws:sns:us-east-1:123456789012:kennel-alarms"

    assert set(found) == EXAMPLE_ALARMS
    for alarm in found.values():
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
    latency = found["kennel-alarm-endpoint-latency-p99"]
    assert (latency["Namespace"], latency["MetricName"], latency["ExtendedStatistic"]) == (
        "AWS/SageMaker",
        "ModelLatency",
        "p99",
    )
    assert latency["Threshold"] == 500_000  # 500 ms in microseconds
    assert {d["Name"]: d["Value"] for d in latency["Dimensions"]} == {
        "EndpointName": "kennel-endpoint",
        "VariantName": "AllTraffic",
    }
    assert found["kennel-alarm-endpoint-cpu"]["Threshold"] == 320  # 80% of ml.c5.xlarge's 4 vCPUs
    at_max = found["kennel-alarm-endpoint-at-max-instances"]
    assert (at_max["Statistic"], at_max["Threshold"], at_max["EvaluationPeriods"]) == ("SampleCount", 4, 30)
    rate = found["kennel-alarm-endpoint-5xx-rate"]
    expression = next(m for m in rate["Metrics"] if m.get("ReturnData"))
    assert expression["Expression"] == "100 * FILL(errors, 0) / invocations"
    stats = {m["Id"]: m["MetricStat"]["Metric"]["MetricName"] for m in rate["Metrics"] if "MetricStat" in m}
    assert stats == {"errors": "Invocation5XXErrors", "invocations": "Invocations"}
    assert found["kennel-alarm-lambda-duration"]["Threshold"] == 24_000  # 80% of 30 s
    errors = found["kennel-alarm-lambda-errors"]
    assert (errors["MetricName"], errors["Period"], errors["Threshold"]) == ("Errors", 300, 1)
    for name in EXAMPLE_ALARMS - {"kennel-alarm-endpoint-cpu"}:
        assert found[name]["TreatMissingData"] == "notBreaching", name
    assert found["kennel-alarm-endpoint-cpu"]["TreatMissingData"] == "missing"
    boto3.client("cloudwatch").set_alarm_state(
        AlarmName="kennel-alarm-lambda-errors", StateValue="ALARM", StateReason="3 errors in 5 min"
    )
    lines = lifecycle.status(make_run(path=operated))
    assert "  alarm kennel-alarm-lambda-errors: ALARM (3 errors in 5 min)" in lines
    assert "  alarm kennel-alarm-lambda-throttles: OK" in lines
    assert {c.kind for c in run.changes} >= {"alarm", "sns topic", "sns subscription", "dashboard"}


def test_the_alarm_topic_has_the_e_mail_subscription(make_run, operated):
    lifecycle.up(make_run(path=operated))
    sns = boto3.client("sns")

    (topic,) = sns.list_topics()["Topics"]
    assert topic["TopicArn"] == "arn:aws:sns:us-east-1:123456789012:kennel-alarms"
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=topic["TopicArn"])["Subscriptions"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", EMAIL)
    assert f"    e-mail {EMAIL}:" in "\n".join(lifecycle.status(make_run(path=operated)))


def test_spillover_is_watched_only_with_provisioned_concurrency(stack_doc, write_stack, make_run):
    stack_doc["lambda"]["provisioned_concurrency"] = 2
    stack = make_run(path=write_stack(stack_doc, "provisioned.toml")).stack
    (spill,) = [a for a in alarms.definitions(stack) if a["AlarmName"] == "kennel-alarm-lambda-spillover"]

    assert spill["MetricName"] == "ProvisionedConcurrencySpilloverInvocations"
    assert {d["Name"]: d["Value"] for d in spill["Dimensions"]} == {
        "FunctionName": "kennel-proxy",
        "Resource": "kennel-proxy:live",
    }
    assert "kennel-alarm-lambda-spillover" not in {
        a["AlarmName"] for a in alarms.definitions(make_run().stack)
    }


def test_the_dashboard_shows_the_stack_on_one_page(make_run, operated):
    lifecycle.up(make_run(path=operated))
    cloudwatch = boto3.client("cloudwatch")

    (listed,) = cloudwatch.list_dashboards()["DashboardEntries"]
    assert listed["DashboardName"] == "kennel-operations"
    body = json.loads(cloudwatch.get_dashboard(DashboardName="kennel-operations")["DashboardBody"])
    graphs = {w["properties"]["title"]: w["properties"] for w in body["widgets"] if w["type"] == "metric"}
    metrics = {(m[0], m[1]) for graph in graphs.values() for m in graph["metrics"]}
    assert {
        ("AWS/SageMaker", "Invocations"),
        ("AWS/SageMaker", "ModelLatency"),
        ("AWS/SageMaker", "Invocation5XXErrors"),
        ("AWS/SageMaker", "Invocation4XXErrors"),
        ("/aws/sagemaker/Endpoints", "CPUUtilization"),
        ("AWS/Lambda", "ConcurrentExecutions"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/Lambda", "Errors"),
    } <= metrics
    latency = graphs["Model latency (microseconds)"]["metrics"]
    assert [m[-1]["stat"] for m in latency if m[1] == "ModelLatency"] == ["p50", "p90", "p99"]
    (status,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert len(status["properties"]["alarms"]) == len(EXAMPLE_ALARMS)
    # One page: no widget below the third row of a 24-column grid.
    assert all(w["x"] + w["width"] <= 24 and w["y"] + w["height"] <= 18 for w in body["widgets"])


def test_data_capture_is_on_the_endpoint_config_with_exactly_its_write_permission(make_run, operated):
    run = lifecycle.up(make_run(path=operated))
    sagemaker = boto3.client("sagemaker")

    config_name = sagemaker.describe_endpoint(EndpointName="kennel-endpoint")["EndpointConfigName"]
    capture = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == 25
    assert capture["DestinationS3Uri"] == "s3://kennel-example-data/kennel/capture"
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    policy = boto3.client("iam").get_role_policy(RoleName="kennel-sagemaker-hosting", PolicyName="kennel")
    # The other writer is batch transform's output prefix, present with the example's [transform] table.
    writes = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if "s3:PutObject" in s["Action"] and s["Sid"] != "WriteTransformOutput"
    ]
    assert writes == [
        {
            "Sid": "WriteDataCapture",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": ["arn:aws:s3:::kennel-example-data/kennel/capture/*"],
        }
    ]
    for name, _, document in iam.roles(run):
        findings = analyze_policy_string(json.dumps(document)).findings
        assert findings == [], f"{name}: {[(f.issue, f.detail) for f in findings]}"


def test_without_data_capture_the_hosting_role_writes_only_transform_output(make_run):
    run = make_run()
    writes = [s for s in iam.hosting_policy(run)["Statement"] if "s3:PutObject" in s["Action"]]
    assert [w["Resource"] for w in writes] == [["arn:aws:s3:::kennel-example-data/kennel/transform/output/*"]]
    assert endpoint_config.data_capture(run) is None


def test_turning_data_capture_on_is_a_blue_green_config_change(make_run, operated):
    lifecycle.up(make_run())
    planned = lifecycle.up(make_run(dry_run=True, path=operated))

    changes = {(c.kind, c.action): c.detail for c in planned.changed()}
    assert (
        "data capture 25% to s3://kennel-example-data/kennel/capture/"
        in changes[("endpoint config", "create")]
    )
    assert changes[("endpoint", "update")].startswith("blue/green kennel-config-")


def test_second_up_changes_nothing_and_down_leaves_none_of_it(make_run, operated):
    put_target_tracking_alarm()
    lifecycle.up(make_run(path=operated))
    assert lifecycle.up(make_run(path=operated)).changed() == []
    assert lifecycle.up(make_run(dry_run=True, path=operated)).changed() == []

    removed = lifecycle.down(make_run(path=operated))

    assert {c.kind for c in removed.changes} >= {"alarm", "dashboard", "sns topic"}
    assert set(alarms_by_name()) == {TARGET_TRACKING_ALARM}
    assert boto3.client("cloudwatch").list_dashboards()["DashboardEntries"] == []
    assert boto3.client("sns").list_topics()["Topics"] == []
    assert boto3.client("sagemaker").list_endpoint_configs()["EndpointConfigs"] == []
    assert lifecycle.down(make_run(path=operated)).changes == []


def test_a_threshold_left_out_removes_its_alarm_and_no_email_removes_the_topic(
    make_run, operated, operated_doc, write_stack
):
    put_target_tracking_alarm()
    lifecycle.up(make_run(path=operated))
    del operated_doc["alarms"]["latency_p99_ms"]
    del operated_doc["alarms"]["email"]
    changed = write_stack(operated_doc, "fewer.toml")

    planned = lifecycle.up(make_run(dry_run=True, path=changed))
    done = lifecycle.up(make_run(path=changed))

    assert [(c.kind, c.name, c.action) for c in planned.changes] == [
        (c.kind, c.name, c.action) for c in done.changes
    ]
    assert ("alarm", "kennel-alarm-endpoint-latency-p99", "delete") in [
        (c.kind, c.name, c.action) for c in done.changes
    ]
    assert set(alarms_by_name()) == EXAMPLE_ALARMS - {"kennel-alarm-endpoint-latency-p99"} | {
        TARGET_TRACKING_ALARM
    }
    assert all(a["AlarmActions"] == [] for n, a in alarms_by_name().items() if n.startswith("kennel-alarm-"))
    assert boto3.client("sns").list_topics()["Topics"] == []


def test_no_alarms_table_means_no_alarms_but_still_a_dashboard(make_run, stack_doc, write_stack):
    del stack_doc["alarms"]
    path = write_stack(stack_doc, "quiet.toml")
    lifecycle.up(make_run(path=path))

    assert alarms_by_name() == {}
    body = json.loads(
        boto3.client("cloudwatch").get_dashboard(DashboardName="kennel-operations")["DashboardBody"]
    )
    assert all(w["type"] == "metric" for w in body["widgets"])
    assert dashboard.name(make_run(path=path).stack) == "kennel-operations"


@pytest.mark.parametrize(
    ("instance_type", "count"),
    [
        ("ml.m6g.medium", 1),
        ("ml.m5.large", 2),
        ("ml.c5.xlarge", 4),
        ("ml.g5.2xlarge", 8),
        ("ml.c5.9xlarge", 36),
    ],
)
def test_vcpus_follow_the_size_name(instance_type, count):
    assert alarms.vcpus(instance_type) == count


def test_a_new_address_replaces_the_topic_and_its_subscription(make_run, operated, operated_doc, write_stack):
    lifecycle.up(make_run(path=operated))
    operated_doc["alarms"]["email"] = "oncall-2@example.com"
    changed = write_stack(operated_doc, "new-address.toml")

    planned = lifecycle.up(make_run(dry_run=True, path=changed))
    done = lifecycle.up(make_run(path=changed))

    assert [(c.kind, c.action, c.detail) for c in done.changed()] == [
        ("sns topic", "update", f"replacing {EMAIL}"),
        ("sns subscription", "create", "the owner must confirm it from the e-mail"),
    ]
    assert [(c.kind, c.name, c.action) for c in planned.changes] == [
        (c.kind, c.name, c.action) for c in done.changes
    ]
    sns = boto3.client("sns")
    (topic,) = sns.list_topics()["Topics"]
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic["TopicArn"])["Subscriptions"]
    assert [s["Endpoint"] for s in subscriptions] == ["oncall-2@example.com"]
    assert all(a["AlarmActions"] == [topic["TopicArn"]] for a in alarms_by_name().values())


def test_cors_origins_reach_the_function_url_so_preflights_are_answered_before_iam_auth(
    make_run, operated, operated_doc, write_stack
):
    lifecycle.up(make_run(path=operated))
    aws_lambda = boto3.client("lambda")

    cors = aws_lambda.get_function_url_config(FunctionName="kennel-proxy", Qualifier="live")["Cors"]
    assert cors["AllowOrigins"] == ["https://app.example.com"]
    assert cors["AllowMethods"] == ["POST"]
    assert "x-amz-date" in cors["AllowHeaders"]

    del operated_doc["lambda"]["cors_allow_origins"]
    done = lifecycle.up(make_run(path=write_stack(operated_doc, "no-cors.toml")))
    assert ("function url", "update") in [(c.kind, c.action) for c in done.changed()]
    url = aws_lambda.get_function_url_config(FunctionName="kennel-proxy", Qualifier="live")
    assert url["Cors"]["AllowOrigins"] == []
    assert url["AuthType"] == "AWS_IAM"
