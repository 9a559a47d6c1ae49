"""transform against moto: the batch transform job SageMaker receives, followed to its end, and the summary
read back from S3. moto completes the job at once and writes nothing, so the results are put where
SageMaker would put them while the job "runs"."""

import json

import boto3
import pytest

from deploy import cli, iam, lifecycle, poll
from deploy.aws import Run
from deploy.stack import parse
from tests.deploy.conftest import example_doc, overlay

BUCKET = "kennel-example-data"
IN, OUT = "kennel/transform/input/photos/", "kennel/transform/output/run1/"


@pytest.fixture
def served(make_run) -> str:
    """`up` has run; returns the model the endpoint serves."""
    lifecycle.up(make_run())
    sagemaker = boto3.client("sagemaker")
    config = sagemaker.describe_endpoint(EndpointName="kennel-endpoint")["EndpointConfigName"]
    return sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]["ModelName"]


def test_transform_runs_the_served_model_over_images_and_summarises(
    served, stack_file, session, monkeypatch, capsys
):
    s3 = boto3.client("s3")
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        s3.put_object(Bucket=BUCKET, Key=IN + name, Body=b"\xff\xd8 jpeg bytes")

    def results_appear(seconds: float) -> None:  # the job writes a result for two of the three
        for name in ("a.jpg", "b.jpg"):
            body = json.dumps(
                {"predictions": [[{"label": "001.Affenpinscher", "index": 0, "probability": 0.9}]]}
            )
            s3.put_object(Bucket=BUCKET, Key=f"{OUT}{name}.out", Body=body.encode())

    monkeypatch.setattr(poll, "sleep", results_appear)
    overlay(
        session,
        "DescribeTransformJob",
        [{"TransformJobStatus": "InProgress"}, {"TransformJobStatus": "Completed"}],
    )
    assert cli.main(["transform", "--stack", str(stack_file), "photos", "run1/"]) == 1  # c.jpg has no result
    out = capsys.readouterr().out
    name = out.split("transform: started ", 1)[1].split()[0]
    assert f"{name}: InProgress\n{name}: Completed\n" in out
    assert f"{name}: 3 input object(s), 2 result file(s), 2 record(s)" in out
    assert f"results: s3://{BUCKET}/{OUT}" in out
    assert "1 input(s) without a result: c.jpg" in out

    job = boto3.client("sagemaker").describe_transform_job(TransformJobName=name)
    assert job["ModelName"] == served
    assert (job["MaxConcurrentTransforms"], job["MaxPayloadInMB"], job["BatchStrategy"]) == (
        4,
        6,
        "SingleRecord",
    )
    assert job["Environment"] == {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "6"}
    assert job["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{IN}"}},
        "ContentType": "application/x-image",
        "SplitType": "None",
        "CompressionType": "None",
    }
    assert job["TransformOutput"] == {
        "S3OutputPath": f"s3://{BUCKET}/{OUT}",
        "Accept": "application/json",
        "AssembleWith": "None",
    }
    assert job["TransformResources"] == {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1}


def test_json_lines_are_split_by_line_and_counted_by_record(
    served, stack_doc, write_stack, monkeypatch, capsys
):
    stack_doc["transform"]["content_type"] = "application/jsonlines"
    path = write_stack(stack_doc, "jsonlines.toml")
    s3 = boto3.client("s3")
    s3.put_object(
        Bucket=BUCKET, Key=IN + "batch.jsonl", Body=b'{"b64": "AAAA"}\n{"b64": "BBBB"}\n{"b64": "CCCC"}\n'
    )
    lines = b"".join(json.dumps({"predictions": [[{"label": "x"}]]}).encode() + b"\n" for _ in range(3))
    s3.put_object(Bucket=BUCKET, Key=OUT + "batch.jsonl.out", Body=lines)
    monkeypatch.setattr(poll, "sleep", lambda seconds: None)
    uri = f"s3://{BUCKET}/{IN}"
    assert cli.main(["transform", "--stack", str(path), uri, f"s3://{BUCKET}/{OUT}"]) == 0
    out = capsys.readouterr().out
    assert "1 input object(s), 1 result file(s), 3 record(s)" in out
    name = out.split("transform: started ", 1)[1].split()[0]
    job = boto3.client("sagemaker").describe_transform_job(TransformJobName=name)
    assert (job["TransformInput"]["SplitType"], job["BatchStrategy"]) == ("Line", "MultiRecord")
    assert job["TransformOutput"]["AssembleWith"] == "Line"
    assert job["TransformOutput"]["Accept"] == "application/jsonlines"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("s3://other-bucket/photos/", "input prefix 's3://other-bucket/photos/' must be a folder under"),
        (f"s3://{BUCKET}/kennel/data/training/", "the model's role may only read there"),
    ],
)
def test_a_prefix_the_role_cannot_read_is_refused_before_any_job(stack_file, capsys, given, message):
    assert cli.main(["transform", "--stack", str(stack_file), given, "run1"]) == 1
    assert message in capsys.readouterr().err
    assert boto3.client("sagemaker").list_transform_jobs()["TransformJobSummaries"] == []


def test_without_an_endpoint_transform_says_to_run_up(stack_file, capsys):
    assert cli.main(["transform", "--stack", str(stack_file), "photos", "run1"]) == 1
    assert "run `python -m deploy up` first" in capsys.readouterr().err


def test_the_models_role_reads_the_input_prefix_and_writes_the_output_prefix_only(tmp_path):
    run = Run(parse(example_doc(), tmp_path), dry_run=True, say=lambda line: None)
    grants = {
        (a, r) for s in iam.hosting_policy(run)["Statement"] for a in s["Action"] for r in s["Resource"]
    }
    objects = f"arn:aws:s3:::{BUCKET}/kennel/transform"
    assert ("s3:GetObject", f"{objects}/input/*") in grants
    assert ("s3:PutObject", f"{objects}/output/*") in grants
    assert [r for a, r in grants if a == "s3:PutObject"] == [f"{objects}/output/*"]
    doc = example_doc()
    del doc["transform"]
    without = Run(parse(doc, tmp_path), dry_run=True, say=lambda line: None)
    assert "transform" not in json.dumps(iam.hosting_policy(without))
