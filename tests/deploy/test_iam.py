"""Every policy deploy generates passes parliament with no findings, and grants no wildcard action and
no `Resource: "*"` beyond the exceptions named in deploy.iam."""

import fnmatch
import json
from pathlib import Path

import boto3
import pytest
from parliament import analyze_policy_string

from deploy import iam, lifecycle
from deploy.aws import DeployError, Run
from deploy.stack import parse
from tests.deploy.conftest import example_doc
from tests.deploy.test_kinds_stack import ASYNC, async_doc, serverless_doc

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


def test_trust_policies_let_their_service_act_only_for_this_account(run):
    sagemaker = "arn:aws:sagemaker:us-east-1:123456789012:"
    sources = {
        "kennel-sagemaker-hosting": [f"{sagemaker}*"],
        "kennel-sagemaker-training": [
            f"{sagemaker}training-job/*",
            f"{sagemaker}hyper-parameter-tuning-job/*",
        ],
    }
    for name, service, _ in iam.roles(run):
        (statement,) = iam.trust_policy(run, name, service)["Statement"]
        condition = {"StringEquals": {"aws:SourceAccount": "123456789012"}}
        if name in sources:
            condition["ArnLike"] = {"aws:SourceArn": sources[name]}
        assert statement == {
            "Effect": "Allow",
            "Principal": {"Service": f"{service}.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": condition,
        }, name


def test_trust_policy_conditions_pass_parliament(run):
    """parliament 1.6 reads no Principal, so each trust statement is linted as a grant of sts:AssumeRole
    on the role itself: that checks its condition keys and operators (a misspelled key is a finding)."""
    for name, service, _ in iam.roles(run):
        for statement in statements(iam.trust_policy(run, name, service)):
            grant = {k: v for k, v in statement.items() if k != "Principal"}
            grant["Resource"] = iam.role_arn(run, name)
            findings = analyze_policy_string(
                json.dumps({"Version": "2012-10-17", "Statement": [grant]})
            ).findings
            assert findings == [], f"{name}: {[(f.issue, f.detail) for f in findings]}"


def test_metrics_may_be_published_only_to_sagemakers_namespaces_for_the_roles_jobs(run):
    wanted = {
        "kennel-sagemaker-hosting": ["/aws/sagemaker/Endpoints", "/aws/sagemaker/TransformJobs"],
        "kennel-sagemaker-training": ["/aws/sagemaker/TrainingJobs"],
        "kennel-lambda-proxy": None,
    }
    for name, policy in policies(run).items():
        found = [s for s in statements(policy) if "cloudwatch:PutMetricData" in s["Action"]]
        if wanted[name] is None:
            assert found == [], name
            continue
        (statement,) = found
        assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": wanted[name]}}, name


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
    policy = docs_block("deployer-policy")
    findings = analyze_policy_string(json.dumps(policy)).findings
    assert findings == [], [(f.issue, f.detail) for f in findings]
    for statement in statements(policy):
        assert not any("*" in action for action in as_list(statement["Action"])), statement
    pass_role = [s for s in statements(policy) if "iam:PassRole" in as_list(s["Action"])]
    services = {s["Condition"]["StringEquals"]["iam:PassedToService"] for s in pass_role}
    assert services == {"sagemaker.amazonaws.com", "lambda.amazonaws.com"}


def docs_block(marker: str) -> dict:
    text = DOCS.read_text()
    return json.loads(text.split(f"<!-- {marker} -->", 1)[1].split("```json", 1)[1].split("```", 1)[0])


def docs_run(doc: dict, tmp_path: Path) -> Run:
    """A stack in the guide's account, 111122223333, as the guide's policies are written."""
    run = Run(parse(doc, tmp_path), dry_run=True, say=lambda line: None)
    run.__dict__["account"] = "111122223333"
    return run


def test_the_boundary_in_the_guide_is_the_one_deploy_writes_and_passes_parliament(tmp_path):
    boundary = iam.boundary_policy(docs_run(example_doc(), tmp_path))
    assert docs_block("role-boundary") == boundary
    assert analyze_policy_string(json.dumps(boundary)).findings == []
    community = analyze_policy_string(json.dumps(boundary), include_community_auditors=True).findings
    assert {f.issue for f in community} == {"CREDENTIALS_EXPOSURE"}  # ecr:GetAuthorizationToken
    check_no_wildcards("boundary", boundary)


def matches(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def allowed_by(statement: dict, action: str, resource: str, condition: dict) -> bool:
    """Whether one Allow statement of the boundary allows this grant: the action, the resource by the
    boundary's wildcards, and every condition the boundary sets narrowed at least as far by the grant."""
    if action not in as_list(statement["Action"]) or not matches(resource, as_list(statement["Resource"])):
        return False
    for operator, keys in statement.get("Condition", {}).items():
        for key, values in keys.items():
            granted = condition.get(operator, {}).get(key)
            if granted is None or not all(matches(v, as_list(values)) for v in as_list(granted)):
                return False
    return True


@pytest.mark.parametrize(
    "variant", ["realtime with transform", "data capture", "async with topics", "serverless", "canary"]
)
def test_every_role_policy_of_every_kind_stays_inside_the_boundary(variant, tmp_path):
    doc = {
        "realtime with transform": example_doc,
        "data capture": lambda: {
            **example_doc(),
            "endpoint": {**example_doc()["endpoint"], "data_capture": {"sampling_percentage": 5}},
        },
        "async with topics": lambda: {
            **async_doc(),
            "endpoint": {**async_doc()["endpoint"], "async": {**ASYNC, "error_topic": True}},
        },
        "serverless": serverless_doc,
        "canary": lambda: {
            **example_doc(),
            "endpoint": {
                **example_doc()["endpoint"],
                "rollout": {"strategy": "canary", "canary_percent": 10},
            },
        },
    }[variant]()
    run = docs_run(doc, tmp_path)
    boundary = statements(iam.boundary_policy(run))
    for name, _, policy in iam.roles(run):
        for statement in statements(policy):
            for action in as_list(statement["Action"]):
                for resource in as_list(statement["Resource"]):
                    condition = statement.get("Condition", {})
                    assert any(allowed_by(b, action, resource, condition) for b in boundary), (
                        f"{name}: {action} on {resource} is outside the boundary"
                    )


# What would let the deployer change or remove the boundary, or give a role a policy beside it.
BOUNDARY_ESCAPES = {
    "iam:AttachRolePolicy",
    "iam:CreatePolicyVersion",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:DeleteRolePermissionsBoundary",
    "iam:SetDefaultPolicyVersion",
}
ROLE_WRITES = {
    "iam:CreateRole",
    "iam:DeleteRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
}


def test_the_deployer_may_write_roles_only_with_the_boundary_and_never_change_it():
    boundary = "arn:aws:iam::111122223333:policy/kennel-role-boundary"
    allows = [s for s in statements(docs_block("deployer-policy")) if s["Effect"] == "Allow"]
    denies = [s for s in statements(docs_block("deployer-policy")) if s["Effect"] == "Deny"]
    for statement in allows:
        actions = set(as_list(statement["Action"]))
        assert not actions & BOUNDARY_ESCAPES, statement
        if actions & ROLE_WRITES:
            assert actions <= ROLE_WRITES, statement
            assert statement["Condition"] == {"ArnEquals": {"iam:PermissionsBoundary": boundary}}
    assert {a for s in allows for a in as_list(s["Action"])} >= ROLE_WRITES
    assert BOUNDARY_ESCAPES - {"iam:AttachRolePolicy"} <= {a for s in denies for a in as_list(s["Action"])}


def create_boundary(run: Run) -> None:
    """The administrator's one step: the boundary policy from the document deploy writes."""
    boto3.client("iam").create_policy(
        PolicyName=run.stack.permissions_boundary, PolicyDocument=json.dumps(iam.boundary_policy(run))
    )


def boundaries() -> dict[str, str | None]:
    client = boto3.client("iam")
    return {
        r["RoleName"]: client.get_role(RoleName=r["RoleName"])["Role"]
        .get("PermissionsBoundary", {})
        .get("PermissionsBoundaryArn")
        for r in client.list_roles()["Roles"]
    }


def test_up_bounds_every_role_and_converges_when_the_boundary_changes(stack_doc, write_stack, make_run):
    bounded = write_stack({**stack_doc, "permissions_boundary": "kennel-role-boundary"}, "bounded.toml")
    with pytest.raises(DeployError, match="permissions_boundary kennel-role-boundary does not exist"):
        lifecycle.up(make_run(path=bounded))
    assert boto3.client("iam").list_roles()["Roles"] == []

    create_boundary(make_run(path=bounded))
    run = lifecycle.up(make_run(path=bounded))
    arn = "arn:aws:iam::123456789012:policy/kennel-role-boundary"
    assert boundaries() == {name: arn for name, _, _ in iam.roles(run)}
    assert lifecycle.up(make_run(path=bounded)).changed() == []

    # Without the key the boundary comes off; with it again it goes back on the existing roles.
    unbounded = lifecycle.up(make_run())
    assert {(c.kind, c.action) for c in unbounded.changed()} == {("iam role boundary", "delete")}
    assert set(boundaries().values()) == {None}
    again = lifecycle.up(make_run(path=bounded))
    assert {(c.kind, c.action) for c in again.changed()} == {("iam role boundary", "create")}
    assert set(boundaries().values()) == {arn}
