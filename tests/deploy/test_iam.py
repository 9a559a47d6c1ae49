"""Every policy deploy generates passes parliament with no findings, and grants no wildcard action and
no `Resource: "*"` beyond the exceptions named in deploy.iam."""

import json
from pathlib import Path

import pytest
from parliament import analyze_policy_string

from deploy import iam
from deploy.aws import Run
from deploy.stack import parse
from tests.deploy.conftest import example_doc

DOCS = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


@pytest.fixture
def run(tmp_path) -> Run:
    return Run(parse(example_doc(), tmp_path), dry_run=True, say=lambda line: None)


def policies(run: Run) -> dict[str, dict]:
    """The identity policies; parliament 1.6 lints those (trust policies are checked below)."""
    return {name: policy for name, _, policy in iam.roles(run)}


def statements(policy: dict) -> list[dict]:
    return policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_every_generated_policy_passes_parliament(run):
    for name, policy in policies(run).items():
        findings = analyze_policy_string(json.dumps(policy)).findings
        assert findings == [], f"{name}: {[(f.issue, f.detail) for f in findings]}"


def test_community_auditors_flag_only_the_registry_token(run):
    for name, policy in policies(run).items():
        findings = analyze_policy_string(json.dumps(policy), include_community_auditors=True).findings
        token = "ecr:GetAuthorizationToken" in json.dumps(policy)
        assert {f.issue for f in findings} == ({"CREDENTIALS_EXPOSURE"} if token else set()), name


def test_trust_policies_let_only_their_service_assume_the_role(run):
    for name, service, _ in iam.roles(run):
        (statement,) = iam.trust_policy(service)["Statement"]
        assert statement == {
            "Effect": "Allow",
            "Principal": {"Service": f"{service}.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }, name


def check_no_wildcards(name: str, policy: dict) -> None:
    for statement in statements(policy):
        actions = as_list(statement.get("Action", []))
        assert not any("*" in action for action in actions), f"{name}: wildcard action in {actions}"
        if "*" in as_list(statement.get("Resource", [])):
            assert set(actions) <= set(iam.RESOURCE_STAR_ONLY), f"{name}: {actions} on Resource *"


def test_no_wildcard_action_and_resource_star_only_for_named_exceptions(run):
    for name, policy in policies(run).items():
        check_no_wildcards(name, policy)


def test_the_lambda_may_only_invoke_its_one_endpoint_and_write_its_logs(run):
    grants = {(a, r) for s in statements(iam.lambda_policy(run)) for a in s["Action"] for r in s["Resource"]}
    group = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/kennel-proxy"
    assert grants == {
        ("sagemaker:InvokeEndpoint", "arn:aws:sagemaker:us-east-1:123456789012:endpoint/kennel-endpoint"),
        ("logs:CreateLogStream", f"{group}:log-stream:*"),
        ("logs:PutLogEvents", f"{group}:log-stream:*"),
    }


def test_the_deployer_policy_in_the_guide_passes_the_same_checks():
    text = DOCS.read_text()
    block = text.split("<!-- deployer-policy -->", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    policy = json.loads(block)
    findings = analyze_policy_string(json.dumps(policy)).findings
    assert findings == [], [(f.issue, f.detail) for f in findings]
    for statement in statements(policy):
        assert not any("*" in action for action in as_list(statement["Action"])), statement
    pass_role = [s for s in statements(policy) if "iam:PassRole" in as_list(s["Action"])]
    services = {s["Condition"]["StringEquals"]["iam:PassedToService"] for s in pass_role}
    assert services == {"sagemaker.amazonaws.com", "lambda.amazonaws.com"}
