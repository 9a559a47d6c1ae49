"""The endpoint kind in the stack file: each kind's keys are validated, and refused on the other kinds
with the reason; the async role's policy still passes parliament."""

import copy
import json
import re
import tomllib
from pathlib import Path

import pytest
from parliament import analyze_policy_string

from deploy import iam
from deploy.aws import Run
from deploy.stack import StackError, parse
from tests.deploy.conftest import EXAMPLE, INSTANCE_ALARMS, LAMBDA_ALARMS, drop_alarms, example_doc

SERVERLESS = {"memory_size_mb": 3072, "max_concurrency": 20}
ASYNC = {
    "input_prefix": "async/input",
    "output_prefix": "async/output",
    "failure_prefix": "async/failures",
    "success_topic": True,
    "error_topic": False,
    "max_concurrent_invocations_per_instance": 2,
    "max_payload_mb": 64,
}


def serverless_doc() -> dict:
    doc = example_doc()
    for key in (
        "instance_type",
        "instance_count",
        "startup_health_check_timeout_seconds",
        "model_download_timeout_seconds",
    ):
        del doc["endpoint"][key]
    del doc["autoscaling"]
    doc["endpoint"].update(kind="serverless", serverless=dict(SERVERLESS))
    return drop_alarms(doc, INSTANCE_ALARMS)


def async_doc() -> dict:
    doc = example_doc()
    doc["endpoint"].update(kind="async", **{"async": copy.deepcopy(ASYNC)})
    del doc["autoscaling"]["target_invocations_per_instance"]
    doc["autoscaling"].update(min_instances=0, target_backlog_per_instance=4)
    del doc["lambda"]
    return drop_alarms(doc, LAMBDA_ALARMS)


def refused(doc: dict, tmp_path) -> str:
    with pytest.raises(StackError) as err:
        parse(doc, tmp_path)
    return str(err.value)


def test_the_example_is_realtime_and_each_kind_parses(tmp_path):
    assert parse(example_doc(), tmp_path).endpoint.kind == "realtime"
    serverless = parse(serverless_doc(), tmp_path)
    assert (
        serverless.endpoint.serverless.memory_size_mb,
        serverless.endpoint.serverless.max_concurrency,
    ) == (
        3072,
        20,
    )
    assert serverless.endpoint.serverless.provisioned_concurrency == 0
    assert serverless.autoscaling is None
    stack = parse(async_doc(), tmp_path)
    assert stack.endpoint.async_inference.max_payload_mb == 64
    assert (stack.autoscaling.min_instances, stack.autoscaling.target_backlog_per_instance) == (0, 4.0)
    assert stack.function is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["endpoint"].update(kind="batch"), "endpoint.kind: 'batch' is not one of"),
        (
            lambda d: d["endpoint"].update(instance_type="ml.c5.xlarge"),
            "endpoint.instance_type: does not apply to a serverless endpoint: a serverless endpoint has no",
        ),
        (
            lambda d: d.update(autoscaling={"min_instances": 1}),
            "autoscaling: does not apply to a serverless endpoint: a serverless endpoint scales itself",
        ),
        (
            lambda d: d["endpoint"]["serverless"].update(memory_size_mb=1536),
            "endpoint.serverless.memory_size_mb: 1536 is not one of SageMaker's sizes 1024, 2048",
        ),
        (
            lambda d: d["endpoint"]["serverless"].update(memory_size_mb=8192),
            "endpoint.serverless.memory_size_mb: 8192 is outside [1024, 6144]",
        ),
        (
            lambda d: d["endpoint"]["serverless"].update(max_concurrency=201),
            "endpoint.serverless.max_concurrency: 201 is outside [1, 200]",
        ),
        (
            lambda d: d["endpoint"]["serverless"].update(provisioned_concurrency=21),
            "endpoint.serverless.provisioned_concurrency: may not exceed max_concurrency",
        ),
        (
            lambda d: d["endpoint"]["serverless"].update(memory=2048),
            "endpoint.serverless.memory: unknown key",
        ),
        (
            lambda d: d["endpoint"].update(**{"async": dict(ASYNC)}),
            "endpoint.async: does not apply to a serverless endpoint",
        ),
        (
            lambda d: d["endpoint"].update(data_capture={"sampling_percentage": 10}),
            "endpoint.data_capture: does not apply to a serverless endpoint: SageMaker does not capture",
        ),
        (
            lambda d: d["alarms"].update(cpu_percent=80),
            "alarms.cpu_percent: does not apply to a serverless endpoint: a serverless endpoint has no "
            "instances",
        ),
        (
            lambda d: d["alarms"].update(at_max_instances_minutes=30),
            "alarms.at_max_instances_minutes: does not apply to a serverless endpoint",
        ),
    ],
)
def test_serverless_refusals_say_why(tmp_path, change, message):
    doc = serverless_doc()
    change(doc)
    assert message in refused(doc, tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.update(**{"lambda": example_doc()["lambda"]}),
            "lambda: does not apply to an async endpoint: the proxy calls InvokeEndpoint",
        ),
        (
            lambda d: d["autoscaling"].update(target_invocations_per_instance=600),
            "autoscaling.target_invocations_per_instance: does not apply to an async endpoint",
        ),
        (
            lambda d: d["endpoint"]["async"].update(output_prefix="async/input/results"),
            "endpoint.async: 'async/input' and 'async/input/results' overlap",
        ),
        (
            lambda d: d["endpoint"]["async"].update(failure_prefix="models/failures"),
            "endpoint.async.failure_prefix: 'models/failures' is inside kennel/models/",
        ),
        (
            lambda d: d["endpoint"]["async"].update(max_payload_mb=2048),
            "endpoint.async.max_payload_mb: 2048 is outside [1, 1024]",
        ),
        (lambda d: d["endpoint"]["async"].pop("error_topic"), "endpoint.async.error_topic: missing"),
        (
            lambda d: d["autoscaling"].pop("target_backlog_per_instance"),
            "target_backlog_per_instance: missing",
        ),
        (
            lambda d: d["autoscaling"].update(min_instances=0) or d["endpoint"].update(instance_count=0),
            "endpoint.instance_count: 0 is outside [1, None]",
        ),
        (
            lambda d: d["alarms"].update(lambda_errors=1),
            "alarms.lambda_errors: does not apply to an async endpoint: an async stack has no Lambda proxy",
        ),
    ],
)
def test_async_refusals_say_why(tmp_path, change, message):
    doc = async_doc()
    change(doc)
    assert message in refused(doc, tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["endpoint"].update(serverless=dict(SERVERLESS)), "endpoint.serverless: does not apply"),
        (
            lambda d: d["autoscaling"].update(target_backlog_per_instance=5),
            "autoscaling.target_backlog_per_instance: does not apply to a realtime endpoint",
        ),
        (
            lambda d: d["autoscaling"].update(min_instances=0),
            "autoscaling.min_instances: 0 is outside [1, None]",
        ),
    ],
)
def test_realtime_refusals_say_why(tmp_path, change, message):
    doc = example_doc()
    change(doc)
    assert message in refused(doc, tmp_path)


def test_async_policies_pass_parliament_and_grant_no_wildcards(tmp_path):
    run = Run(parse(async_doc(), tmp_path), dry_run=True, say=lambda line: None)
    for name, _, policy in iam.roles(run):
        assert analyze_policy_string(json.dumps(policy)).findings == [], name
        community = analyze_policy_string(json.dumps(policy), include_community_auditors=True).findings
        token = "ecr:GetAuthorizationToken" in json.dumps(policy)
        assert {f.issue for f in community} == ({"CREDENTIALS_EXPOSURE"} if token else set()), name
        for statement in policy["Statement"]:
            assert not any("*" in action for action in statement["Action"]), statement
            if "*" in statement["Resource"]:
                assert set(statement["Action"]) <= set(iam.RESOURCE_STAR_ONLY), statement
    (notify,) = [s for s in iam.hosting_policy(run)["Statement"] if s["Sid"] == "Notify"]
    assert notify["Resource"] == ["arn:aws:sns:us-east-1:123456789012:kennel-async-success"]


def test_serverless_and_realtime_hosting_policies_grant_no_async_prefixes(tmp_path):
    for doc in (example_doc(), serverless_doc()):
        run = Run(parse(doc, tmp_path), dry_run=True, say=lambda line: None)
        sids = {s["Sid"] for s in iam.hosting_policy(run)["Statement"]}
        assert sids.isdisjoint({"ReadAsyncInput", "WriteAsyncResults", "Notify"})


def test_the_async_deployer_grants_in_the_guide_pass_parliament():
    text = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    block = text.split("<!-- deployer-policy-async -->", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    policy = json.loads(block)
    findings = analyze_policy_string(json.dumps(policy)).findings
    assert findings == [], [(f.issue, f.detail) for f in findings]
    for statement in policy["Statement"]:
        assert "*" not in statement["Resource"] and not any("*" in a for a in statement["Action"])


def commented_keys(text: str, start: str) -> dict:
    """The `# key = value` lines of the example's commented block that opens with `start`."""
    block = text.split(start, 1)[1].split("\n\n", 1)[0]
    return tomllib.loads(
        "\n".join(line[2:] for line in block.splitlines() if re.match(r"# [a-z_]+ = ", line))
    )


def test_the_examples_commented_kind_tables_are_valid_stack_keys(tmp_path):
    text = EXAMPLE.read_text()
    doc = serverless_doc()
    doc["endpoint"]["serverless"] = commented_keys(text, "# [endpoint.serverless]\n")
    assert set(doc["endpoint"]["serverless"]) == {
        "memory_size_mb",
        "max_concurrency",
        "provisioned_concurrency",
    }
    parse(doc, tmp_path)
    doc = async_doc()
    doc["endpoint"]["async"] = commented_keys(text, "# [endpoint.async]\n")
    assert set(doc["endpoint"]["async"]) == set(ASYNC)
    backlog = commented_keys(text, "target_invocations_per_instance = 600\n")
    assert backlog == {"target_backlog_per_instance": 5}
    parse(doc, tmp_path)
