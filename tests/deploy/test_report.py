"""`deploy report` against moto: the report and rules.json out of a job's output.tar.gz, and nothing else;
`[training] tensorboard = true` gives the job its TensorBoardOutputConfig."""

import io
import json
import tarfile

import boto3
import pytest

from deploy import cli

REPORT = "<!doctype html><html><body><h1>Kennel training report</h1></body></html>"
RULES = {"findings": [{"rule": "overfit", "action": "warn"}]}


@pytest.fixture
def metrics(tmp_path):
    path = tmp_path / "metric_definitions.json"
    path.write_text(json.dumps([{"Name": "validation:accuracy", "Regex": "validation:accuracy=([0-9.]+)"}]))
    return path


def started(session, argv: list[str]) -> tuple[str, dict]:
    """Runs `argv` (a train command); returns the job's name and the CreateTrainingJob request."""
    requests: list[dict] = []
    session.events.register(
        "before-parameter-build.sagemaker.CreateTrainingJob",
        lambda params, **kw: requests.append(dict(params)),
    )
    assert cli.main(argv) == 0
    return requests[0]["TrainingJobName"], requests[0]


def archive(members: dict[str, bytes]) -> bytes:
    """An output.tar.gz as SageMaker packs /opt/ml/output/data (members under ./)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("./report-link.html")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    return buffer.getvalue()


def test_report_fetches_the_report_from_the_jobs_output_and_prints_its_path(
    stack_file, metrics, session, tmp_path, capsys
):
    name, _ = started(session, ["train", "--stack", str(stack_file), "--metric-definitions", str(metrics)])
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="kennel-example-data")
    body = archive(
        {
            "./report.html": REPORT.encode(),
            "./rules.json": json.dumps(RULES).encode(),
            "../outside.html": b"x",
        }
    )
    s3.put_object(Bucket="kennel-example-data", Key=f"kennel/training/{name}/output/output.tar.gz", Body=body)
    capsys.readouterr()
    out = tmp_path / "reports"
    assert cli.main(["report", "--stack", str(stack_file), name, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(out / name / "report.html")
    assert (out / name / "report.html").read_text() == REPORT
    assert json.loads((out / name / "rules.json").read_text()) == RULES
    assert sorted(p.name for p in (out / name).iterdir()) == ["report.html", "rules.json"]
    assert not (tmp_path / "outside.html").exists()


def test_report_says_when_a_job_has_no_report(stack_file, metrics, session, tmp_path, capsys):
    name, _ = started(session, ["train", "--stack", str(stack_file), "--metric-definitions", str(metrics)])
    boto3.client("s3").create_bucket(Bucket="kennel-example-data")
    capsys.readouterr()
    assert cli.main(["report", "--stack", str(stack_file), name, "--out", str(tmp_path)]) == 1
    key = f"s3://kennel-example-data/kennel/training/{name}/output/output.tar.gz"
    assert f"deploy report: training job {name} has no {key}" in capsys.readouterr().err
    assert cli.main(["report", "--stack", str(stack_file), "kennel-nothing", "--out", str(tmp_path)]) == 1
    assert "no training job named kennel-nothing" in capsys.readouterr().err


@pytest.mark.parametrize("tensorboard", [True, False])
def test_tensorboard_in_the_stack_file_syncs_the_jobs_scalars_to_s3(
    stack_doc, write_stack, metrics, session, tensorboard
):
    if tensorboard:
        stack_doc["training"]["tensorboard"] = True
    stack = write_stack(stack_doc)
    name, request = started(session, ["train", "--stack", str(stack), "--metric-definitions", str(metrics)])
    if tensorboard:
        assert request["TensorBoardOutputConfig"] == {
            "S3OutputPath": f"s3://kennel-example-data/kennel/training/{name}/tensorboard/",
            "LocalPath": "/opt/ml/output/tensorboard",
        }
    else:
        assert "TensorBoardOutputConfig" not in request
