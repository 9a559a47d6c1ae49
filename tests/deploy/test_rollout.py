"""[endpoint.rollout]: the stack file's checks, and `up` driving a canary or linear release through
UpdateEndpoint's DeploymentConfig, followed step by step. moto has no UpdateEndpoint, so SageMaker and
CloudWatch are scripted with botocore's Stubber (answers checked against the service model) and every
script must be used up."""

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber
from parliament import analyze_policy_string

from deploy import endpoint, iam
from deploy.aws import DeployError, Run
from deploy.stack import StackError, parse
from tests.deploy.conftest import example_doc

NEW, OLD = "kennel-config-new", "kennel-config-old"
FIVE_XX, P99 = "kennel-alarm-endpoint-5xx-rate", "kennel-alarm-endpoint-latency-p99"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/kennel-endpoint"
BAKED = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def stack_doc(rollout: dict | None, **endpoint: object) -> dict:
    doc = example_doc()
    doc["endpoint"].update(endpoint)
    if rollout is not None:
        doc["endpoint"]["rollout"] = dict(rollout)
    return doc


CANARY = {"strategy": "canary", "canary_percent": 25, "wait_seconds": 300, "bake_seconds": 600}


# The stack file


def test_without_the_table_updates_go_all_at_once_as_before(tmp_path):
    run = Run(parse(stack_doc(None), tmp_path))
    assert run.stack.endpoint.rollout.strategy == "all_at_once"
    assert endpoint.deployment_config(run) == endpoint.BLUE_GREEN


def test_a_canary_becomes_sagemakers_deployment_config(tmp_path):
    run = Run(parse(stack_doc(CANARY | {"timeout_seconds": 3600}), tmp_path))
    assert endpoint.deployment_config(run) == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 300,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
            },
            "TerminationWaitInSeconds": 600,
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        # The stack's own alarms by default.
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": FIVE_XX}, {"AlarmName": P99}]},
    }


def test_the_endpoint_role_may_read_the_rollback_alarms_and_no_others(tmp_path):
    run = Run(parse(stack_doc(CANARY | {"alarms": ["endpoint-5xx-rate"]}), tmp_path))
    run.__dict__["account"] = "123456789012"
    run.clients["sts"] = boto3.client("sts", region_name="us-east-1")
    policy = iam.hosting_policy(run)
    assert analyze_policy_string(json.dumps(policy)).findings == []
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["ReadRollbackAlarms"]["Resource"] == [
        f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{FIVE_XX}"
    ]
    plain = Run(parse(stack_doc(None), tmp_path))
    plain.__dict__["account"] = "123456789012"
    plain.clients["sts"] = run.clients["sts"]
    assert "ReadRollbackAlarms" not in {s["Sid"] for s in iam.hosting_policy(plain)["Statement"]}


def test_a_linear_rollout_and_its_defaults(tmp_path):
    rollout = parse(stack_doc({"strategy": "linear", "step_percent": 20}), tmp_path).endpoint.rollout
    assert (rollout.step_percent, rollout.wait_seconds, rollout.bake_seconds) == (20, 300, 300)
    assert rollout.alarms == ("endpoint-5xx-rate", "endpoint-latency-p99")


def test_preflight_images_resolve_against_the_stack_files_folder(tmp_path):
    (tmp_path / "photos").mkdir()
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / "photos" / name).write_bytes(b"x")
    folder = parse(stack_doc({"preflight_images": "photos"}), tmp_path).endpoint.rollout
    assert [p.name for p in folder.preflight_images] == ["a.jpg", "b.png"]
    listed = parse(stack_doc({"preflight_images": ["photos/b.png"]}), tmp_path).endpoint.rollout
    assert listed.preflight_images == ((tmp_path / "photos" / "b.png").resolve(),)


@pytest.mark.parametrize(
    ("rollout", "endpoint_keys", "message"),
    [
        (
            {"strategy": "blue"},
            {},
            "endpoint.rollout.strategy: 'blue' is not one of all_at_once, canary, linear",
        ),
        ({"strategy": "canary"}, {}, "endpoint.rollout.canary_percent: missing"),
        (CANARY | {"canary_percent": 60}, {}, "endpoint.rollout.canary_percent: 60 is outside [1, 50]"),
        (
            {"strategy": "linear", "step_percent": 5},
            {},
            "endpoint.rollout.step_percent: 5 is outside [10, 50]",
        ),
        (
            CANARY | {"step_percent": 20},
            {},
            "endpoint.rollout.step_percent: does not apply to strategy 'canary'; remove it",
        ),
        (
            {"canary_percent": 10},
            {},
            "endpoint.rollout.canary_percent: does not apply to strategy 'all_at_once'; remove it",
        ),
        (CANARY | {"wait_seconds": 3601}, {}, "endpoint.rollout.wait_seconds: 3601 is outside [0, 3600]"),
        (CANARY | {"bake_seconds": -1}, {}, "endpoint.rollout.bake_seconds: -1 is outside [0, 3600]"),
        (
            CANARY | {"timeout_seconds": 300},
            {},
            "endpoint.rollout.timeout_seconds: 300 is outside [600, 28800]",
        ),
        (
            CANARY | {"alarms": ["endpoint-errors"]},
            {},
            "endpoint.rollout.alarms: must list some of the stack's endpoint alarms (endpoint-5xx-rate, "
            "endpoint-4xx-rate, endpoint-latency-p99, endpoint-cpu); endpoint-errors is not one",
        ),
        (CANARY | {"preflight_images": "nowhere"}, {}, "is not a folder"),
        (CANARY | {"preflight_images": []}, {}, "must be a folder or a non-empty list of image files"),
        (CANARY | {"speed": 1}, {}, "endpoint.rollout.speed: unknown key"),
        (
            CANARY,
            {"instance_type": "ml.inf1.xlarge"},
            "endpoint.rollout.strategy: SageMaker moves traffic to Inf1 instances all at once",
        ),
    ],
)
def test_bad_rollouts_are_refused_with_the_key_and_the_range(tmp_path, rollout, endpoint_keys, message):
    with pytest.raises(StackError) as err:
        parse(stack_doc(rollout, **endpoint_keys), tmp_path)
    assert str(err.value).startswith("endpoint.rollout.")
    assert message in str(err.value)


def test_a_guarded_rollout_needs_the_alarms_it_names(tmp_path):
    doc = stack_doc(CANARY)
    del doc["alarms"]["latency_p99_ms"]
    with pytest.raises(StackError) as err:
        parse(doc, tmp_path)
    assert str(err.value) == (
        "endpoint.rollout.alarms: endpoint-latency-p99 rolls the canary rollout back, but no alarm of that "
        "name is created: set alarms.latency_p99_ms in [alarms], or list other alarms"
    )
    doc["endpoint"]["rollout"]["alarms"] = ["endpoint-5xx-rate"]
    assert parse(doc, tmp_path).endpoint.rollout.alarms == ("endpoint-5xx-rate",)


def test_a_serverless_endpoint_refuses_steps_and_says_why(tmp_path):
    doc = example_doc()
    doc["endpoint"] = {
        "kind": "serverless",
        "variant": "AllTraffic",
        "log_retention_days": 30,
        "serverless": {"memory_size_mb": 2048, "max_concurrency": 5},
        "rollout": {"strategy": "linear", "step_percent": 20},
    }
    del doc["autoscaling"]
    for key in ("cpu_percent", "at_max_instances_minutes"):
        doc["alarms"].pop(key, None)
    with pytest.raises(StackError, match="a serverless endpoint has none; use all_at_once"):
        parse(doc, tmp_path)
    doc["endpoint"]["rollout"] = {"preflight_images": ["../nothing.jpg"]}
    with pytest.raises(StackError, match=r"nothing\.jpg is not a file"):
        parse(doc, tmp_path)


# The release, scripted


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def stub(stub_client):
    """stub(run, service): a stubbed client in the run (tests/deploy/conftest.py)."""
    return stub_client


def make_run(tmp_path, lines: list[str], rollout: dict) -> Run:
    stack = parse(stack_doc(rollout, instance_count=4), tmp_path)
    return Run(stack, poll_seconds=0, say=lines.append)


def described(status: str, config: str, pending: dict | None = None, old_weight: float = 1.0, reason=None):
    answer = {
        "EndpointName": "kennel-endpoint",
        "EndpointArn": ARN,
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": BAKED,
        "LastModifiedTime": BAKED,
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "CurrentWeight": old_weight, "CurrentInstanceCount": 4}
        ],
    }
    if pending:
        answer["PendingDeploymentSummary"] = pending
    if reason:
        answer["FailureReason"] = reason
    return answer


def new_fleet(status: str, weight: float, running: int, started: datetime = BAKED) -> dict:
    """The pending deployment as DescribeEndpoint reports it: the new fleet's state and weight."""
    return {
        "EndpointConfigName": NEW,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "CurrentWeight": weight,
                "DesiredWeight": 1.0,
                "CurrentInstanceCount": running,
                "DesiredInstanceCount": 4,
                "VariantStatus": [{"Status": status, "StartTime": started}],
            }
        ],
        "StartTime": BAKED,
    }


def alarm_states(five_xx: str = "OK", p99: str = "OK") -> dict:
    reason = (
        "Threshold Crossed: 5 datapoints [12.5 (01/01/26 12:04:00)] were greater than the threshold (1.0)."
    )
    return {
        "MetricAlarms": [
            {
                "AlarmName": FIVE_XX,
                "StateValue": five_xx,
                "StateReason": reason if five_xx == "ALARM" else "ok",
            },
            {"AlarmName": P99, "StateValue": p99, "StateReason": "ok"},
        ]
    }


def expect_update(sagemaker: Stubber, run: Run, deployment: dict) -> None:
    sagemaker.add_response(
        "update_endpoint",
        {"EndpointArn": ARN},
        {
            "EndpointName": "kennel-endpoint",
            "EndpointConfigName": NEW,
            "RetainAllVariantProperties": True,
            "ExcludeRetainedVariantProperties": [],
            "DeploymentConfig": deployment,
        },
    )


def script(sagemaker: Stubber, cloudwatch: Stubber, polls: list[tuple[dict, dict]]) -> None:
    """One DescribeEndpoint and one DescribeAlarms per poll."""
    for answer, alarms in polls:
        sagemaker.add_response("describe_endpoint", answer, {"EndpointName": "kennel-endpoint"})
        cloudwatch.add_response("describe_alarms", alarms, {"AlarmNames": [FIVE_XX, P99]})


def test_a_canary_that_completes_is_followed_step_by_step(tmp_path, stub, lines):
    run = make_run(tmp_path, lines, CANARY)
    sagemaker, cloudwatch = stub(run, "sagemaker"), stub(run, "cloudwatch")
    expect_update(sagemaker, run, endpoint.deployment_config(run))
    script(
        sagemaker,
        cloudwatch,
        [
            (described("Updating", OLD, new_fleet("Creating", 0.0, 0)), alarm_states()),
            (described("Updating", OLD, new_fleet("Creating", 0.0, 4)), alarm_states()),
            (described("Updating", OLD, new_fleet("Baking", 0.25, 4), old_weight=0.75), alarm_states()),
            (described("Updating", OLD, new_fleet("Baking", 0.25, 4), old_weight=0.75), alarm_states()),
            (
                described(
                    "Updating", OLD, new_fleet("Baking", 1.0, 4, datetime(2026, 1, 1, 12, 5, tzinfo=UTC)), 0
                ),
                alarm_states(),
            ),
            (described("InService", NEW), alarm_states()),
        ],
    )
    endpoint.ensure_endpoint(run, NEW, described("InService", OLD))
    assert lines == [
        f"update  endpoint               kennel-endpoint (blue/green {OLD} -> {NEW}, canary 25%, the rest "
        f"after 300 s, bake 600 s, rollback on {FIVE_XX}, {P99})",
        "  new fleet Creating: 0% of traffic, 0/4 instances",
        f"  alarm {FIVE_XX}: OK",
        f"  alarm {P99}: OK",
        "  new fleet Creating: 0% of traffic, 4/4 instances",
        "  new fleet Baking: 25% of traffic, 4/4 instances; baking 300 s, until 12:05:00 UTC",
        "  new fleet Baking: 100% of traffic, 4/4 instances; baking 600 s, until 12:15:00 UTC",
        f"endpoint kennel-endpoint is InService on {NEW}: all traffic on the new model",
    ]


def test_a_rollback_names_the_alarm_that_fired_and_fails(tmp_path, stub, lines):
    run = make_run(tmp_path, lines, CANARY)
    sagemaker, cloudwatch = stub(run, "sagemaker"), stub(run, "cloudwatch")
    expect_update(sagemaker, run, endpoint.deployment_config(run))
    reason = f"Deployment rolled back: alarm {FIVE_XX} went into ALARM during the baking period."
    script(
        sagemaker,
        cloudwatch,
        [
            (described("Updating", OLD, new_fleet("Creating", 0.0, 4)), alarm_states()),
            (described("Updating", OLD, new_fleet("Baking", 0.25, 4), old_weight=0.75), alarm_states()),
            (
                described("Updating", OLD, new_fleet("Baking", 0.25, 4), old_weight=0.75),
                alarm_states("ALARM"),
            ),
            (described("RollingBack", OLD), alarm_states("ALARM")),
            (described("InService", OLD, reason=reason), alarm_states("OK")),
        ],
    )
    heard: list[str] = []
    with pytest.raises(DeployError) as err:
        endpoint.ensure_endpoint(run, NEW, described("InService", OLD), on_rollback=heard.append)
    message = (
        f"endpoint kennel-endpoint rolled back to {OLD}: alarm {FIVE_XX} fired; the old model still serves"
    )
    assert str(err.value) == f"{message}: {reason}"
    assert heard == [f"{message}: {reason}"]
    assert lines[1:] == [
        "  new fleet Creating: 0% of traffic, 4/4 instances",
        f"  alarm {FIVE_XX}: OK",
        f"  alarm {P99}: OK",
        "  new fleet Baking: 25% of traffic, 4/4 instances; baking 300 s, until 12:05:00 UTC",
        f"  alarm {FIVE_XX}: ALARM (Threshold Crossed: 5 datapoints [12.5 (01/01/26 12:04:00)] were greater "
        "than the threshold (1.0).)",
        "  endpoint RollingBack",
        f"  alarm {FIVE_XX}: OK",
    ]


def test_a_linear_rollout_says_each_step(tmp_path, stub, lines):
    run = make_run(tmp_path, lines, {"strategy": "linear", "step_percent": 25, "wait_seconds": 120})
    sagemaker, cloudwatch = stub(run, "sagemaker"), stub(run, "cloudwatch")
    deployment = endpoint.deployment_config(run)
    assert deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] == {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 120,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
    }
    expect_update(sagemaker, run, deployment)
    steps = [
        (described("Updating", OLD, new_fleet("Creating", 0.0, 4)), alarm_states()),
        (
            described("Updating", OLD, new_fleet("ActivatingTraffic", 0.25, 4), old_weight=0.75),
            alarm_states(),
        ),
    ]
    for i, share in enumerate((0.25, 0.5, 0.75, 1.0)):
        started = datetime(2026, 1, 1, 12, 2 * i, tzinfo=UTC)
        baking = described("Updating", OLD, new_fleet("Baking", share, 4, started), old_weight=1.0 - share)
        steps.append((baking, alarm_states()))
    steps.append((described("InService", NEW), alarm_states()))
    script(sagemaker, cloudwatch, steps)
    endpoint.ensure_endpoint(run, NEW, described("InService", OLD))
    assert [line for line in lines if "new fleet" in line] == [
        "  new fleet Creating: 0% of traffic, 4/4 instances",
        "  new fleet ActivatingTraffic: 25% of traffic, 4/4 instances",
        "  new fleet Baking: 25% of traffic, 4/4 instances; baking 120 s, until 12:02:00 UTC",
        "  new fleet Baking: 50% of traffic, 4/4 instances; baking 120 s, until 12:04:00 UTC",
        "  new fleet Baking: 75% of traffic, 4/4 instances; baking 120 s, until 12:06:00 UTC",
        "  new fleet Baking: 100% of traffic, 4/4 instances; baking 300 s, until 12:11:00 UTC",
    ]
    assert lines[-1] == f"endpoint kennel-endpoint is InService on {NEW}: all traffic on the new model"


def test_a_new_instance_type_keeps_the_all_at_once_path(tmp_path, stub, lines):
    run = make_run(tmp_path, lines, CANARY)
    sagemaker = stub(run, "sagemaker")
    sagemaker.add_response(
        "update_endpoint",
        {"EndpointArn": ARN},
        {
            "EndpointName": "kennel-endpoint",
            "EndpointConfigName": NEW,
            "RetainAllVariantProperties": True,
            "ExcludeRetainedVariantProperties": [{"VariantPropertyType": "DesiredInstanceCount"}],
            "DeploymentConfig": endpoint.BLUE_GREEN,
        },
    )
    sagemaker.add_response("describe_endpoint", described("InService", NEW))
    sagemaker.add_response("describe_endpoint", described("InService", NEW))
    endpoint.ensure_endpoint(
        run, NEW, described("InService", OLD), new_instance_type=True, all_at_once="the instance type changes"
    )
    assert run.changes[0].detail == f"blue/green {OLD} -> {NEW}, all at once: the instance type changes"


def test_a_rollout_that_fails_to_roll_back_says_so(tmp_path, stub, lines):
    run = make_run(tmp_path, lines, CANARY)
    sagemaker, cloudwatch = stub(run, "sagemaker"), stub(run, "cloudwatch")
    expect_update(sagemaker, run, endpoint.deployment_config(run))
    reason = "Rollback failed: the old fleet could not be restored."
    script(sagemaker, cloudwatch, [(described("UpdateRollbackFailed", OLD, reason=reason), alarm_states())])
    with pytest.raises(DeployError) as err:
        endpoint.ensure_endpoint(run, NEW, described("InService", OLD))
    assert str(err.value) == f"endpoint kennel-endpoint is UpdateRollbackFailed: {reason}"
