"""The operations keys of the stack file: validated like every other key, each error naming its key."""

import copy

import pytest

from deploy import function
from deploy.stack import Alarms, StackError, parse
from tests.deploy.conftest import example_doc


def with_key(path: str, value: object) -> dict:
    doc = copy.deepcopy(example_doc())
    *tables, key = path.split(".")
    target = doc
    for table in tables:
        target = target.setdefault(table, {})
    target[key] = value
    return doc


CASES = [
    (
        "lambda.allowed_url_hosts",
        "s3.amazonaws.com",
        "lambda.allowed_url_hosts: must be a list of host names",
    ),
    ("lambda.allowed_url_hosts", ["https://s3.amazonaws.com/bucket"], "lambda.allowed_url_hosts: 'https://"),
    ("lambda.allowed_url_hosts", ["*"], "lambda.allowed_url_hosts: '*': wildcards are refused"),
    ("lambda.allowed_url_hosts", ["*.example.com"], "lambda.allowed_url_hosts: '*.example.com': wildcards"),
    (
        "lambda.allowed_url_hosts",
        ["93.184.215.14"],
        "lambda.allowed_url_hosts: '93.184.215.14' is an address",
    ),
    ("lambda.allowed_url_hosts", ["[::1]:443"], "lambda.allowed_url_hosts: '[::1]:443' is an address"),
    ("lambda.allowed_url_hosts", ["localhost"], "lambda.allowed_url_hosts: 'localhost' is not a host name"),
    ("lambda.allowed_url_hosts", ["a_b.example.com"], "lambda.allowed_url_hosts: 'a_b.example.com' is not a"),
    ("lambda.allowed_url_hosts", ["example.com:0"], "lambda.allowed_url_hosts: 'example.com:0': the port"),
    ("lambda.allowed_url_hosts", [""], "lambda.allowed_url_hosts: each entry must be a non-empty string"),
    ("lambda.max_image_bytes", 7_000_000, "lambda.max_image_bytes: 7000000 is outside [1, 6291456]"),
    ("lambda.cors_allow_origins", ["*"], "lambda.cors_allow_origins: '*' is refused"),
    ("lambda.cors_allow_origins", ["https://app.example.com/x"], "lambda.cors_allow_origins: 'https://app"),
    ("lambda.cors_allow_origins", ["app.example.com"], "lambda.cors_allow_origins: 'app.example.com' is not"),
    (
        "endpoint.data_capture.sampling_percentage",
        0,
        "endpoint.data_capture.sampling_percentage: 0 is outside",
    ),
    ("endpoint.data_capture.prefix", "a b", "endpoint.data_capture.sampling_percentage: missing"),
    ("endpoint.data_capture", "on", "endpoint.data_capture: must be a table"),
    ("alarms.cpu_percent", 150, "alarms.cpu_percent: 150 is a percentage, at most 100"),
    ("alarms.latency_p99_ms", -1, "alarms.latency_p99_ms: must be a positive number"),
    ("alarms.evaluation_minutes", 0, "alarms.evaluation_minutes: 0 is outside [1, 60]"),
    ("alarms.lambda_errors", 0.5, "alarms.lambda_errors: must be an integer"),
    ("alarms.endpoint_5xx_rate", 1, "alarms.endpoint_5xx_rate: unknown key"),
    ("alarms.email", "oncall", "alarms.email: 'oncall' does not match"),
    ("endpoint.instance_type", "ml.c5.metal", "endpoint.instance_type: 'ml.c5.metal' has no size"),
]


@pytest.mark.parametrize(("key", "value", "message"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_operations_key_is_named(tmp_path, key, value, message):
    with pytest.raises(StackError) as err:
        parse(with_key(key, value), tmp_path)
    assert str(err.value).startswith(message)


def test_an_unknown_data_capture_key_is_named(tmp_path):
    doc = with_key("endpoint.data_capture", {"sampling_percentage": 10, "sampling": 5})
    with pytest.raises(StackError, match=r"^endpoint\.data_capture\.sampling: unknown key"):
        parse(doc, tmp_path)


def test_host_names_and_origins_are_kept_in_lower_case(tmp_path):
    doc = with_key("lambda.allowed_url_hosts", ["S3.AmazonAWS.com", "images.example.com:8443"])
    doc["lambda"]["cors_allow_origins"] = ["HTTPS://App.Example.com", "http://localhost:3000"]
    stack = parse(doc, tmp_path)

    assert stack.function.allowed_url_hosts == ("s3.amazonaws.com", "images.example.com:8443")
    assert stack.function.cors_allow_origins == ("https://app.example.com", "http://localhost:3000")
    assert (
        function.environment(stack)["KENNEL_ALLOWED_URL_HOSTS"] == "s3.amazonaws.com,images.example.com:8443"
    )


def test_left_out_keys_leave_the_proxy_on_its_defaults(tmp_path):
    doc = example_doc()
    del doc["alarms"]
    stack = parse(doc, tmp_path)

    assert stack.endpoint.data_capture is None
    assert stack.alarms == Alarms()
    assert set(function.environment(stack)) == {
        "SAGEMAKER_ENDPOINT_NAME",
        "KENNEL_MAX_ATTEMPTS",
        "KENNEL_INVOKE_READ_TIMEOUT_S",
    }


def test_data_capture_prefix_defaults(tmp_path):
    stack = parse(with_key("endpoint.data_capture", {"sampling_percentage": 100}), tmp_path)
    assert (stack.endpoint.data_capture.sampling_percentage, stack.endpoint.data_capture.prefix) == (
        100,
        "data-capture",
    )
