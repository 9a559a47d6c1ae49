"""What moto cannot do (its update_endpoint is a 500, provisioned concurrency a 404), scripted with
botocore's Stubber and verified with assert_no_pending_responses."""

import functools

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from deploy import dashboard, ecr, endpoint, follow, function, model, topics
from deploy.aws import DeployError, Run
from deploy.stack import parse
from tests.deploy.conftest import example_doc

NEW, OLD = "kennel-config-new", "kennel-config-old"


@pytest.fixture
def run(tmp_path) -> Run:
    return Run(parse(example_doc(), tmp_path), poll_seconds=0, say=lambda line: None)


@pytest.fixture
def stub(run: Run, stub_client):
    """stub(service) puts a stubbed client into the run; every script must be used up."""
    return functools.partial(stub_client, run)


def described(status: str, config: str, reason: str | None = None) -> dict:
    answer = {
        "EndpointName": "kennel-endpoint",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/kennel-endpoint",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": "2026-01-01T00:00:00Z",
        "LastModifiedTime": "2026-01-01T00:00:00Z",
    }
    if reason:
        answer["FailureReason"] = reason
    return answer


def expect_update(stubber: Stubber, exclude: list) -> None:
    stubber.add_response(
        "update_endpoint",
        {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/kennel-endpoint"},
        {
            "EndpointName": "kennel-endpoint",
            "EndpointConfigName": NEW,
            "RetainAllVariantProperties": True,
            "ExcludeRetainedVariantProperties": exclude,
            "DeploymentConfig": endpoint.BLUE_GREEN,
        },
    )


def test_blue_green_update_keeps_the_scaled_count_and_confirms_the_new_config(run, stub):
    sagemaker = stub("sagemaker")
    expect_update(sagemaker, exclude=[])
    sagemaker.add_response("describe_endpoint", described("Updating", OLD))
    sagemaker.add_response("describe_endpoint", described("InService", NEW))
    sagemaker.add_response("describe_endpoint", described("InService", NEW))
    endpoint.ensure_endpoint(run, NEW, described("InService", OLD))
    assert [(c.action, c.detail) for c in run.changes] == [("update", f"blue/green {OLD} -> {NEW}")]


def test_a_new_instance_type_takes_the_configs_count(run, stub):
    sagemaker = stub("sagemaker")
    expect_update(sagemaker, exclude=[{"VariantPropertyType": "DesiredInstanceCount"}])
    sagemaker.add_response("describe_endpoint", described("InService", NEW))
    sagemaker.add_response("describe_endpoint", described("InService", NEW))
    endpoint.ensure_endpoint(run, NEW, described("InService", OLD), new_instance_type=True)


def test_a_rolled_back_update_fails_with_the_failure_reason(run, stub):
    reason = "The primary container for production variant AllTraffic did not pass the ping health check."
    sagemaker = stub("sagemaker")
    expect_update(sagemaker, exclude=[])
    sagemaker.add_response("describe_endpoint", described("Updating", OLD))
    sagemaker.add_response("describe_endpoint", described("RollingBack", OLD))
    sagemaker.add_response("describe_endpoint", described("InService", OLD, reason))
    sagemaker.add_response("describe_endpoint", described("InService", OLD, reason))
    with pytest.raises(DeployError, match="rolled back to kennel-config-old") as err:
        endpoint.ensure_endpoint(run, NEW, described("InService", OLD))
    assert err.value.reason == reason


def test_a_failed_endpoint_reports_its_failure_reason(run, stub):
    reason = "Image size 12 GB is greater than supported size 10 GB for ml.c5.xlarge"
    sagemaker = stub("sagemaker")
    sagemaker.add_response(
        "create_endpoint",
        {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/kennel-endpoint"},
        {"EndpointName": "kennel-endpoint", "EndpointConfigName": NEW, "Tags": run.tag_list()},
    )
    sagemaker.add_response("describe_endpoint", described("Creating", NEW))
    sagemaker.add_response("describe_endpoint", described("Failed", NEW, reason))
    sagemaker.add_response("describe_endpoint", described("Failed", NEW, reason))
    with pytest.raises(DeployError, match="is Failed") as err:
        endpoint.ensure_endpoint(run, NEW, None)
    assert err.value.reason == reason


def pc(status: str, requested: int = 2, reason: str | None = None) -> dict:
    answer = {"RequestedProvisionedConcurrentExecutions": requested, "Status": status}
    return answer | ({"StatusReason": reason} if reason else {})


def test_provisioned_concurrency_is_put_on_the_alias_and_awaited(run, stub):
    aws_lambda = stub("lambda")
    where = {"FunctionName": "kennel-proxy", "Qualifier": "live"}
    aws_lambda.add_client_error(
        "get_provisioned_concurrency_config",
        "ProvisionedConcurrencyConfigNotFoundException",
        http_status_code=404,
    )
    aws_lambda.add_response(
        "put_provisioned_concurrency_config",
        pc("IN_PROGRESS"),
        where | {"ProvisionedConcurrentExecutions": 2},
    )
    aws_lambda.add_response("get_provisioned_concurrency_config", pc("IN_PROGRESS"), where)
    aws_lambda.add_response("get_provisioned_concurrency_config", pc("READY"), where)
    function.ensure_provisioned(run)
    assert [(c.kind, c.action) for c in run.changes] == [("provisioned concurrency", "create")]


def test_provisioned_concurrency_already_ready_is_left_alone(run, stub):
    stub("lambda").add_response("get_provisioned_concurrency_config", pc("READY"))
    function.ensure_provisioned(run)
    assert [c.action for c in run.changes] == ["unchanged"]


def test_failed_provisioned_concurrency_reports_lambdas_reason(run, stub):
    reason = "FUNCTION_ERROR_INIT_FAILURE"
    aws_lambda = stub("lambda")
    aws_lambda.add_response("get_provisioned_concurrency_config", pc("READY", requested=1))
    aws_lambda.add_response("put_provisioned_concurrency_config", pc("IN_PROGRESS"))
    aws_lambda.add_response("get_provisioned_concurrency_config", pc("FAILED", reason=reason))
    with pytest.raises(DeployError) as err:
        function.ensure_provisioned(run)
    assert err.value.reason == reason
    assert [(c.action, c.detail) for c in run.changes] == [("update", "2")]


IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/kennel-serve:v1"
DATA = "s3://kennel-example-data/kennel/models/0123456789abcdef/model.tar.gz"
ROLE = "arn:aws:iam::123456789012:role/kennel-sagemaker-hosting"


def test_a_role_iam_has_not_spread_yet_is_waited_for_then_the_model_is_made(run, stub):
    sagemaker = stub("sagemaker")
    name = model.model_name(run, IMAGE, DATA, ROLE)
    sagemaker.add_client_error("describe_model", "ValidationException", f"Could not find model '{name}'.")
    sagemaker.add_client_error("create_model", "ValidationException", f"Could not assume role {ROLE}.")
    sagemaker.add_response(
        "create_model", {"ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{name}"}
    )
    assert model.ensure_model(run, IMAGE, DATA, ROLE) == name
    assert [(c.kind, c.action) for c in run.changes] == [("sagemaker model", "create")]


def test_another_create_model_error_is_not_retried(run, stub):
    sagemaker = stub("sagemaker")
    name = model.model_name(run, IMAGE, DATA, ROLE)
    sagemaker.add_client_error("describe_model", "ValidationException", f"Could not find model '{name}'.")
    sagemaker.add_client_error("create_model", "ValidationException", "Requested image not found.")
    with pytest.raises(ClientError, match="Requested image not found"):
        model.ensure_model(run, IMAGE, DATA, ROLE)


@pytest.mark.parametrize(
    ("service", "method", "code", "check"),
    [
        ("sagemaker", "describe_endpoint", "ValidationException", endpoint.describe),
        (
            "ecr",
            "describe_repositories",
            "ThrottlingException",
            lambda run: ecr.delete_repository(run, "serve"),
        ),
        ("lambda", "get_function_configuration", "TooManyRequestsException", function.get_configuration),
        ("cloudwatch", "get_dashboard", "InvalidParameterValue", dashboard.delete_dashboard),
        ("sns", "get_topic_attributes", "AuthorizationError", lambda run: topics.exists(run, "kennel-x")),
    ],
)
def test_only_the_services_own_not_found_answer_counts_as_absent(run, stub, service, method, code, check):
    """A throttle, a refusal or a bad parameter is an error, never "it does not exist"."""
    stub(service).add_client_error(method, code, "1 validation error detected: Value at 'name' failed")
    with pytest.raises(ClientError) as err:
        check(run)
    assert err.value.response["Error"]["Code"] == code


def test_a_job_name_is_looked_up_through_each_way_sagemaker_says_not_found(run, stub):
    sagemaker = stub("sagemaker")
    # AWS's answer for a training job (moto's differs), the modeled one, moto's and AWS's for the rest.
    sagemaker.add_client_error(
        "describe_training_job", "ValidationException", "Requested resource not found."
    )
    sagemaker.add_client_error(
        "describe_hyper_parameter_tuning_job", "ResourceNotFound", "Amazon SageMaker can't find"
    )
    sagemaker.add_client_error(
        "describe_transform_job", "ValidationException", "Could not find job 'kennel-x'."
    )
    with pytest.raises(DeployError, match="no training, tuning or transform job named kennel-x"):
        follow.job_kind(run, "kennel-x")


def test_a_refused_lookup_is_not_a_missing_job(run, stub):
    stub("sagemaker").add_client_error("describe_training_job", "AccessDeniedException", "not authorized")
    with pytest.raises(ClientError, match="not authorized"):
        follow.job_kind(run, "kennel-x")
