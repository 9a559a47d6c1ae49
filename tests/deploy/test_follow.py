"""train --wait, follow and stop against moto. moto finishes a job the moment it is created, so the states
in between come from a script laid over moto's describe answers, and the log lines are put into moto's
CloudWatch Logs while the job "runs" (between polls), as SageMaker's containers would."""

import json
import time
from datetime import UTC, datetime

import boto3
import pytest

from deploy import cli, follow, poll
from tests.deploy.conftest import overlay

GROUP = "/aws/sagemaker/TrainingJobs"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def metrics(tmp_path):
    path = tmp_path / "metric_definitions.json"
    path.write_text(json.dumps([{"Name": "validation:accuracy", "Regex": "validation:accuracy=([0-9.]+)"}]))
    return path


def transitions(*statuses: tuple[str, str]) -> list[dict]:
    return [{"Status": s, "StartTime": T0, "StatusMessage": m} for s, m in statuses]


STARTING = ("Starting", "Launching requested ML instances")
TRAINING = ("Training", "Training image download completed. Training in progress.")
INTERRUPTED = ("Interrupted", "Spot instances were reclaimed")
RESTARTING = ("Restarting", "Restarting the training job")
SCRIPT = [
    {"TrainingJobStatus": "InProgress", "SecondaryStatusTransitions": transitions(STARTING)},
    {"TrainingJobStatus": "InProgress", "SecondaryStatusTransitions": transitions(STARTING, TRAINING)},
    {
        "TrainingJobStatus": "InProgress",
        "SecondaryStatusTransitions": transitions(STARTING, TRAINING, INTERRUPTED, RESTARTING),
    },
    {
        "TrainingJobStatus": "Completed",
        "SecondaryStatusTransitions": transitions(
            STARTING, TRAINING, INTERRUPTED, RESTARTING, TRAINING, ("Completed", "Training job completed")
        ),
        "FinalMetricDataList": [{"MetricName": "validation:accuracy", "Value": 0.875, "Timestamp": T0}],
        "EnableManagedSpotTraining": True,
        "TrainingTimeInSeconds": 1000,
        "BillableTimeInSeconds": 300,
    },
]
# What the job's containers write while it runs: before the second poll, then after the spot restart
# (a new stream, as SageMaker opens one per container start).
LOGS = [
    {"algo-1-1767225600": ["epoch 1/2 train_loss=2.10", "checkpoint saved: epoch 1"]},
    {},
    {
        "algo-1-1767229200": [
            "resumed from checkpoint: epoch 1",
            "finding rule=overfit action=warn epoch=2 step=40 seconds=81.2 gap=0.3112 epochs=3",
            "validation:accuracy=0.875",
        ]
    },
]


def writes_logs(monkeypatch, job: list[str], batches: list[dict], then: Exception | None = None) -> None:
    """Each poll's wait puts the next batch of log lines into moto; `then` is raised once they run out."""
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=GROUP)
    pending = list(batches)

    def sleep(seconds: float) -> None:
        if not pending:
            if then:
                raise then
            return
        for stream, lines in pending.pop(0).items():
            name = f"{job[0]}/{stream}"
            if not logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=name)["logStreams"]:
                logs.create_log_stream(logGroupName=GROUP, logStreamName=name)
            now = int(time.time() * 1000)
            events = [{"timestamp": now + i, "message": line} for i, line in enumerate(lines)]
            logs.put_log_events(logGroupName=GROUP, logStreamName=name, logEvents=events)

    monkeypatch.setattr(poll, "sleep", sleep)


def job_name(session) -> list[str]:
    """The name of the training job the command creates, once it has created it."""
    name: list[str] = []
    session.events.register(
        "before-parameter-build.sagemaker.CreateTrainingJob",
        lambda params, **kw: name.append(params["TrainingJobName"]),
    )
    return name


def test_train_wait_shows_status_changes_spot_restarts_log_lines_and_metrics(
    stack_file, metrics, session, monkeypatch, capsys
):
    job = job_name(session)
    seen = overlay(session, "DescribeTrainingJob", SCRIPT)
    writes_logs(monkeypatch, job, LOGS)
    argv = ["train", "--stack", str(stack_file), "--metric-definitions", str(metrics), "--wait"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    name = job[0]
    followed = out[out.index(f"train: started {name}") + 1 :]
    assert followed == [
        f"{name}: Starting - Launching requested ML instances",
        f"{name}: Training - Training image download completed. Training in progress.",
        "[algo-1] epoch 1/2 train_loss=2.10",
        "[algo-1] checkpoint saved: epoch 1",
        f"{name}: Interrupted - Spot instances were reclaimed ({follow.SPOT_NOTES['Interrupted']})",
        f"{name}: Restarting - Restarting the training job ({follow.SPOT_NOTES['Restarting']})",
        f"{name}: Training - Training image download completed. Training in progress.",
        f"{name}: Completed - Training job completed",
        "[algo-1] resumed from checkpoint: epoch 1",
        "[algo-1] finding rule=overfit action=warn epoch=2 step=40 seconds=81.2 gap=0.3112 epochs=3",
        "[algo-1] validation:accuracy=0.875",
        "  validation:accuracy = 0.875",
        "  findings: 1: overfit (warn) at epoch 2",
        "  16m40s training, 5m00s billed (spot saved 70%)",
        f"train: {name} completed: s3://kennel-example-data/kennel/training/{name}/output/model.tar.gz",
    ]
    assert len(seen) == len(SCRIPT)
    # the job is the one moto holds, with the image `train` pushed first
    described = boto3.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert (
        described["AlgorithmSpecification"]["TrainingImage"]
        == "123456789012.dkr.ecr.us-east-1.amazonaws.com/kennel-train:test1"
    )


def test_a_failed_job_ends_with_its_failure_reason(stack_file, metrics, session, capsys):
    reason = "AlgorithmError: missing train split: none of /opt/ml/input/data/training/train is a folder"
    overlay(session, "DescribeTrainingJob", [{"TrainingJobStatus": "Failed", "FailureReason": reason}])
    argv = ["train", "--stack", str(stack_file), "--metric-definitions", str(metrics), "--wait"]
    assert cli.main(argv) == 1
    assert f"Failed: {reason}" in capsys.readouterr().err


def test_ctrl_c_stops_following_not_the_job_and_says_how_to_resume(
    stack_file, metrics, session, monkeypatch, capsys
):
    job = job_name(session)
    overlay(session, "DescribeTrainingJob", SCRIPT[:1])
    writes_logs(monkeypatch, job, LOGS[:1], then=KeyboardInterrupt())
    argv = ["train", "--stack", str(stack_file), "--metric-definitions", str(metrics), "--wait"]
    assert cli.main(argv) == 130
    captured = capsys.readouterr()
    assert "[algo-1] checkpoint saved: epoch 1" in captured.out
    assert f"stopped following {job[0]}; the job keeps running" in captured.err
    assert f"python -m deploy follow --stack {stack_file} {job[0]}" in captured.err
    assert f"python -m deploy stop --stack {stack_file} {job[0]}" in captured.err
    # following again picks the job up and reads its log from the start
    overlay(session, "DescribeTrainingJob", SCRIPT[-1:])
    assert cli.main(["follow", "--stack", str(stack_file), job[0]]) == 0
    out = capsys.readouterr().out
    assert "[algo-1] epoch 1/2 train_loss=2.10" in out and "validation:accuracy = 0.875" in out


@pytest.mark.parametrize(
    ("kind", "operation", "parameter"),
    [
        ("training", "StopTrainingJob", "TrainingJobName"),
        ("tuning", "StopHyperParameterTuningJob", "HyperParameterTuningJobName"),
    ],
)
def test_stop_asks_sagemaker_to_stop_the_job(
    stack_file, metrics, stubbed, capsys, kind, operation, parameter
):
    command = "train" if kind == "training" else "tune"
    assert cli.main([command, "--stack", str(stack_file), "--metric-definitions", str(metrics)]) == 0
    name = capsys.readouterr().out.split("started ", 1)[1].split()[0]
    method = "stop_training_job" if kind == "training" else "stop_hyper_parameter_tuning_job"
    stubbed(operation).add_response(method, {}, {parameter: name})
    assert cli.main(["stop", "--stack", str(stack_file), name]) == 0
    assert f"stop: asked SageMaker to stop {kind} job {name}" in capsys.readouterr().out


def test_stop_a_transform_job(stack_file, stubbed, capsys):
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(
        ModelName="kennel-model-1",
        PrimaryContainer={
            "Image": "x/kennel-serve:test1",
            "ModelDataUrl": "s3://kennel-example-data/m.tar.gz",
        },
        ExecutionRoleArn="arn:aws:iam::123456789012:role/kennel-sagemaker-hosting",
    )
    sagemaker.create_transform_job(
        TransformJobName="kennel-transform1",
        ModelName="kennel-model-1",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}}},
        TransformOutput={"S3OutputPath": "s3://b/out/"},
        TransformResources={"InstanceType": "ml.c5.xlarge", "InstanceCount": 1},
    )
    stubbed("StopTransformJob").add_response(
        "stop_transform_job", {}, {"TransformJobName": "kennel-transform1"}
    )
    assert cli.main(["stop", "--stack", str(stack_file), "kennel-transform1"]) == 0
    assert "stop: asked SageMaker to stop transform job kennel-transform1" in capsys.readouterr().out


def test_stop_and_follow_name_an_unknown_job(stack_file, capsys):
    assert cli.main(["stop", "--stack", str(stack_file), "kennel-nothing"]) == 1
    assert "no training, tuning or transform job named kennel-nothing" in capsys.readouterr().err
