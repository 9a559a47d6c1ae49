"""tune --wait, trials and promote against moto. The tuning job's states are laid over moto's describe
answers; its trials come from ListTrainingJobsForHyperParameterTuningJob, which moto lacks, through a
Stubber checked against the service model. The promoted trial is a real training job in moto, so the
rewritten stack file is then planned for real."""

import difflib
import json
import tomllib
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from deploy import cli, poll, trials
from deploy.aws import DeployError
from deploy.stack import load
from tests.deploy.conftest import EXAMPLE, overlay

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# (suffix, status, lr, batch_size, objective, minutes)
TRIALS = [
    ("001-0a1b2c3d", "Completed", "0.0031", "64", 0.81, 20),
    ("002-1b2c3d4e", "Completed", "0.0112", "32", 0.86, 25),
    ("003-2c3d4e5f", "Failed", "0.0801", "512", None, 3),
    ("004-3d4e5f6a", "Completed", "0.0017", "128", 0.79, 18),
]


@pytest.fixture
def commented_stack(stack_doc, tmp_path):
    """The example stack file itself, comments and all, pointed at the test's model and handler."""
    text = EXAMPLE.read_text()
    for old, new in [
        ('dir = "../build/model"', f'dir = "{stack_doc["model"]["dir"]}"'),
        ('source_dir = "../kennel_proxy"', f'source_dir = "{stack_doc["lambda"]["source_dir"]}"'),
        ('# tag = "v1"', 'tag = "test1"'),
        ("provisioned_concurrency = 2", "provisioned_concurrency = 0"),
    ]:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "my-stack.toml"
    path.write_text(text)
    return path


def summary(tuning: str, suffix: str, status: str, lr: str, batch: str, value, minutes: int) -> dict:
    answer = {
        "TrainingJobName": f"{tuning}-{suffix}",
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{tuning}-{suffix}",
        "CreationTime": T0,
        "TrainingStartTime": T0,
        "TrainingEndTime": T0 + timedelta(minutes=minutes),
        "TrainingJobStatus": status,
        # SageMaker passes categorical values JSON-encoded
        "TunedHyperParameters": {"lr": lr, "batch_size": json.dumps(batch)},
    }
    if value is not None:
        answer["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "Type": "Maximize",
            "MetricName": "validation:accuracy",
            "Value": value,
        }
    if status == "Failed":
        answer["FailureReason"] = "AlgorithmError: CUDA out of memory at batch_size 512"
    return answer


COUNTERS = {"Completed": 0, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0, "Stopped": 0}


def tuning_script() -> list[dict]:
    return [
        {
            "HyperParameterTuningJobStatus": "InProgress",
            "TrainingJobStatusCounters": COUNTERS | {"InProgress": 2},
            "BestTrainingJob": None,
        },
        {
            "HyperParameterTuningJobStatus": "Completed",
            "TrainingJobStatusCounters": COUNTERS | {"Completed": 3, "NonRetryableError": 1},
        },
    ]


def create_trials_in_moto(tuning: str) -> None:
    """The trials' training jobs, as SageMaker would have run them, so `up` can serve one."""
    sagemaker = boto3.client("sagemaker")
    for suffix, *_ in TRIALS:
        sagemaker.create_training_job(
            TrainingJobName=f"{tuning}-{suffix}",
            AlgorithmSpecification={"TrainingImage": "x/kennel-train:test1", "TrainingInputMode": "File"},
            RoleArn="arn:aws:iam::123456789012:role/kennel-sagemaker-training",
            OutputDataConfig={"S3OutputPath": "s3://kennel-example-data/kennel/training/"},
            ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
            StoppingCondition={"MaxRuntimeInSeconds": 14400},
        )


def test_tune_wait_promote_prints_the_trials_best_first_and_rewrites_the_stack(
    commented_stack, session, stubbed, monkeypatch, capsys
):
    monkeypatch.setattr(poll, "sleep", lambda seconds: None)
    names: list[str] = []
    listing = stubbed("ListTrainingJobsForHyperParameterTuningJob")

    def started(params, **kwargs) -> None:
        name = params["HyperParameterTuningJobName"]
        names.append(name)
        create_trials_in_moto(name)
        pages = [[summary(name, *t) for t in TRIALS[:2]], [summary(name, *t) for t in TRIALS[2:]]]
        listing.add_response(
            "list_training_jobs_for_hyper_parameter_tuning_job",
            {"TrainingJobSummaries": pages[0], "NextToken": "page-2"},
            {"HyperParameterTuningJobName": name},
        )
        listing.add_response(
            "list_training_jobs_for_hyper_parameter_tuning_job",
            {"TrainingJobSummaries": pages[1]},
            {"HyperParameterTuningJobName": name, "NextToken": "page-2"},
        )
        script[-1]["BestTrainingJob"] = summary(name, *TRIALS[1])

    session.events.register("before-parameter-build.sagemaker.CreateHyperParameterTuningJob", started)
    script = tuning_script()
    overlay(session, "DescribeHyperParameterTuningJob", script)
    before = commented_stack.read_text()

    assert cli.main(["tune", "--stack", str(commented_stack), "--wait", "--promote"]) == 0
    out = capsys.readouterr().out.splitlines()
    name = names[0]
    followed = out[out.index(f"tune: started {name}") + 1 :]
    assert followed[:5] == [
        f"{name}: InProgress",
        f"{name}: trials 0 completed, 2 running, 0 failed, 0 stopped",
        f"{name}: Completed",
        f"{name}: trials 3 completed, 0 running, 1 failed, 0 stopped",
        f"{name}: best so far {name}-002-1b2c3d4e: validation:accuracy = 0.86",
    ]
    table = followed[5:]
    assert table[0].split() == ["#", "trial", "batch_size", "lr", "validation:accuracy", "status", "duration"]
    assert [row.split() for row in table[1:5]] == [
        ["1", f"{name}-002-1b2c3d4e", "32", "0.0112", "0.86", "Completed", "25m00s"],
        ["2", f"{name}-001-0a1b2c3d", "64", "0.0031", "0.81", "Completed", "20m00s"],
        ["3", f"{name}-004-3d4e5f6a", "128", "0.0017", "0.79", "Completed", "18m00s"],
        ["4", f"{name}-003-2c3d4e5f", "512", "0.0801", "-", "Failed", "3m00s"],
    ]
    assert f"{name}-003-2c3d4e5f: AlgorithmError: CUDA out of memory at batch_size 512" in out

    # the stack file: [model] now names the best trial, every other line as it was
    after = commented_stack.read_text()
    changed = [line for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line[:1] in "+-"]
    model_dir = tomllib.loads(before)["model"]["dir"]
    assert changed == [
        f'- dir = "{model_dir}"',
        f'+ # dir = "{model_dir}"  (replaced by `deploy promote`)',
        f'+ training_job = "{name}-002-1b2c3d4e"',
    ]
    assert load(commented_stack).model.training_job == f"{name}-002-1b2c3d4e"
    assert cli.main(["plan", "--stack", str(commented_stack)]) == 0
    expected = f"s3://kennel-example-data/kennel/training/{name}-002-1b2c3d4e/output/model.tar.gz"
    assert expected in capsys.readouterr().out


def test_trials_and_promote_later_by_name(commented_stack, stubbed, capsys):
    assert cli.main(["tune", "--stack", str(commented_stack)]) == 0
    name = capsys.readouterr().out.split("started ", 1)[1].split()[0]
    create_trials_in_moto(name)
    listing = stubbed("ListTrainingJobsForHyperParameterTuningJob")
    for _ in range(2):
        listing.add_response(
            "list_training_jobs_for_hyper_parameter_tuning_job",
            {"TrainingJobSummaries": [summary(name, *t) for t in TRIALS]},
            {"HyperParameterTuningJobName": name},
        )
    assert cli.main(["trials", "--stack", str(commented_stack), name]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[1] == f"{name}-002-1b2c3d4e"
    assert cli.main(["promote", "--stack", str(commented_stack), name]) == 0
    assert load(commented_stack).model.training_job == f"{name}-002-1b2c3d4e"


def test_promote_twice_replaces_the_job_and_keeps_one_model_source(commented_stack):
    trials.promote(commented_stack, "kennel-t0101000000-001-aaaa")
    trials.promote(commented_stack, "kennel-t0101000000-002-bbbb")
    text = commented_stack.read_text()
    assert text.count("training_job = ") == 2  # the example's commented line, and the promoted one
    assert 'training_job = "kennel-t0101000000-002-bbbb"' in text
    assert load(commented_stack).model.dir is None


def test_no_completed_trial_is_a_clear_error():
    found = trials.Trials(
        "kennel-t1", "validation:accuracy", True, [trials.Trial("a", "Failed", {}, None, 10)]
    )
    with pytest.raises(DeployError, match="has no completed trial with a validation:accuracy value yet"):
        found.best()
