"""Bad stack files fail before any AWS call, and the error names the key."""

import copy

import pytest

from deploy import cli
from deploy.stack import StackError, parse
from tests.deploy.conftest import example_doc, to_toml


def mutate(path: str, value: object) -> dict:
    doc = copy.deepcopy(example_doc())
    *tables, key = path.split(".")
    target = doc
    for table in tables:
        target = target[table]
    if value is DELETE:
        del target[key]
    else:
        target[key] = value
    return doc


DELETE = object()
CASES = [
    ("endpoint.instance_count", DELETE, "endpoint.instance_count: missing"),
    ("endpoint.instance_cuont", 2, "endpoint.instance_cuont: unknown key"),
    ("endpoint.instance_count", "2", "endpoint.instance_count: must be an integer"),
    ("endpoint.instance_type", "ml.t2.medium", "endpoint.instance_type: auto-scaling does not support"),
    ("name", "Kennel", "name: 'Kennel' does not match"),
    ("region", DELETE, "region: missing"),
    ("autoscaling.max_instances", 0, "autoscaling.max_instances: 0 is outside"),
    (
        "autoscaling.min_instances",
        3,
        "autoscaling.min_instances: needs min_instances <= endpoint.instance_count",
    ),
    ("lambda.provisioned_concurrency", 50, "lambda.provisioned_concurrency: may not exceed"),
    ("lambda", DELETE, "lambda: missing"),
    (
        "model.training_job",
        "kennel-train1",
        "model: set exactly one of model.dir, model.training_job and model.package",
    ),
    ("tuning.learning_rate", [0.1, 0.001], "tuning.learning_rate: needs 0 < low < high"),
    ("tuning.batch_sizes", [32, "64"], "tuning.batch_sizes: must be a list of ints"),
    ("training.max_wait_seconds", 60, "training.max_wait_seconds: must be at least"),
    ("training.hyperparameters.lr", [1], "training.hyperparameters.lr: must be a string, number or boolean"),
    ("s3.bucket", "Not_A_Bucket", "s3.bucket:"),
    ("tags.owner", 3, "tags.owner: must be a string"),
    ("transform.content_type", "image/gif", "transform.content_type: 'image/gif' is not one of"),
    ("transform.max_payload_mb", 50, "transform.max_concurrent_transforms: times transform.max_payload_mb"),
    ("transform.instance_cuont", 1, "transform.instance_cuont: unknown key"),
]


@pytest.mark.parametrize(
    ("key", "value", "message"), CASES, ids=[c[0] + "-" + str(i) for i, c in enumerate(CASES)]
)
def test_bad_key_is_named(tmp_path, key, value, message):
    with pytest.raises(StackError) as err:
        parse(mutate(key, value), tmp_path)
    assert str(err.value).startswith(message)


def test_the_example_is_valid_and_names_derive_from_it(tmp_path):
    stack = parse(example_doc(), tmp_path)
    assert (stack.endpoint_name, stack.function_name) == ("kennel-endpoint", "kennel-proxy")
    assert stack.repository("serve") == "kennel-serve"
    assert stack.s3_uri("data", "training") == "s3://kennel-example-data/kennel/data/training"
    assert stack.training.hyperparameters == {"epochs": "10", "lr": "0.001", "batch_size": "64"}


def test_cli_reports_the_key_and_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(to_toml(mutate("lambda.memory_mb", 64)))
    assert cli.main(["plan", "--stack", str(path)]) == 2
    assert "lambda.memory_mb: 64 is outside [128, 10240]" in capsys.readouterr().err


def test_cli_reports_invalid_toml(tmp_path, capsys):
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    assert cli.main(["up", "--stack", str(path)]) == 2
    assert "is not valid TOML" in capsys.readouterr().err
