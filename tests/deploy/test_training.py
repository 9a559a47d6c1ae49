"""train and tune against moto: the requests SageMaker receives, read back through describe calls."""

import json
import re

import boto3
import pytest

from deploy import cli, iam, lifecycle
from deploy.training import METRIC_DEFINITIONS


@pytest.fixture
def metrics(tmp_path):
    path = tmp_path / "metric_definitions.json"
    path.write_text(json.dumps([{"Name": "validation:accuracy", "Regex": "validation:accuracy=([0-9.]+)"}]))
    return path


def test_train_starts_a_spot_job_with_checkpoints_and_waits(stack_file, metrics, capsys):
    assert (
        cli.main(["train", "--stack", str(stack_file), "--metric-definitions", str(metrics), "--wait"]) == 0
    )
    out = capsys.readouterr().out
    name = out.split("started ", 1)[1].split()[0]
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert (
        job["AlgorithmSpecification"]["TrainingImage"]
        == "123456789012.dkr.ecr.us-east-1.amazonaws.com/kennel-train:test1"
    )
    assert job["RoleArn"] == "arn:aws:iam::123456789012:role/kennel-sagemaker-training"
    assert job["HyperParameters"] == {"epochs": "10", "lr": "0.001", "batch_size": "64"}
    channel = job["InputDataConfig"][0]
    assert channel["ChannelName"] == "training"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == "s3://kennel-example-data/kennel/data/training/"
    assert job["OutputDataConfig"]["S3OutputPath"] == "s3://kennel-example-data/kennel/training/"
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 14400, "MaxWaitTimeInSeconds": 28800}
    assert "completed: s3://kennel-example-data/kennel/training/" in out


def test_up_serves_a_training_jobs_output(stack_doc, write_stack, make_run, metrics, capsys):
    assert (
        cli.main(["train", "--stack", str(write_stack(stack_doc)), "--metric-definitions", str(metrics)]) == 0
    )
    name = capsys.readouterr().out.split("started ", 1)[1].split()[0]
    del stack_doc["model"]["dir"]
    stack_doc["model"]["training_job"] = name
    lifecycle.up(make_run(path=write_stack(stack_doc, "from-job.toml")))
    sagemaker = boto3.client("sagemaker")
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName="kennel-endpoint")["EndpointConfigName"]
    )
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    expected = f"s3://kennel-example-data/kennel/training/{name}/output/model.tar.gz"
    assert model["PrimaryContainer"]["ModelDataUrl"] == expected


def test_tune_searches_lr_on_a_log_scale_and_batch_size_as_categories(stack_file, capsys):
    assert (
        cli.main(["tune", "--stack", str(stack_file), "--metric-definitions", str(METRIC_DEFINITIONS)]) == 0
    )
    name = capsys.readouterr().out.split("started ", 1)[1].split()[0]
    assert re.fullmatch(r"kennel-t\d{10}", name)  # tuning job names may have 32 characters at most
    job = boto3.client("sagemaker").describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    config = job["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": "validation:accuracy",
    }
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "lr", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
    ]
    assert ranges["CategoricalParameterRanges"] == [
        {"Name": "batch_size", "Values": ["32", "64", "128", "256", "512"]}
    ]
    definition = job["TrainingJobDefinition"]
    assert definition["StaticHyperParameters"] == {"epochs": "10"}
    assert definition["EnableManagedSpotTraining"] is True
    # Every metric the training image logs, the objective among them, exactly as the image ships them.
    shipped = json.loads(METRIC_DEFINITIONS.read_text())
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == shipped
    assert "validation:accuracy" in {d["Name"] for d in shipped}


def test_missing_metric_definitions_is_a_clear_error(stack_file, tmp_path, capsys):
    missing = tmp_path / "nowhere.json"
    assert cli.main(["train", "--stack", str(stack_file), "--metric-definitions", str(missing)]) == 1
    assert (
        "nowhere.json is missing: the training image ships its metric definitions there"
        in capsys.readouterr().err
    )


def test_a_serving_up_pushes_one_image_and_train_pushes_the_training_image(
    make_run, stack_file, metrics, pushed
):
    lifecycle.up(make_run())
    ecr = boto3.client("ecr")
    assert pushed == ["serve"]
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["kennel-serve"]
    argv = ["train", "--stack", str(stack_file), "--metric-definitions", str(metrics)]
    assert cli.main(argv) == 0
    assert pushed == ["serve", "train"]
    images = ecr.describe_images(repositoryName="kennel-train")["imageDetails"]
    assert [image["imageTags"] for image in images] == [["test1"]]
    assert cli.main(argv) == 0
    assert pushed == ["serve", "train"]  # the tag is there: nothing built or pushed again


def test_train_before_up_makes_its_repository_image_and_role(stack_file, metrics, make_run):
    assert cli.main(["train", "--stack", str(stack_file), "--metric-definitions", str(metrics)]) == 0
    policy = boto3.client("iam").get_role_policy(RoleName="kennel-sagemaker-training", PolicyName="kennel")
    assert policy["PolicyDocument"] == iam.training_policy(make_run())
    repository = boto3.client("ecr").describe_repositories(repositoryNames=["kennel-train"])["repositories"][
        0
    ]
    assert repository["imageTagMutability"] == "IMMUTABLE"
