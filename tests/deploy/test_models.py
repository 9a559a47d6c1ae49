"""The model registry against moto: versions registered by `models register`, `train --wait` and
`promote`, listed, approved and rejected, and served by `up` only when approved. moto has no
DeleteModelPackage or DeleteModelPackageGroup: `down`'s deletes go to Stubbers checked against the
service model."""

import fnmatch
import io
import json
import tarfile
from datetime import UTC
from pathlib import Path

import boto3
import pytest
from kennel_serve import codecs

from deploy import cli, iam, lifecycle, preflight, registry, s3
from deploy.aws import DeployError
from deploy.stack import StackError, parse
from tests.deploy.conftest import example_doc
from tests.deploy.test_iam import as_list, docs_block, statements
from tests.deploy.test_trials import TRIALS, commented_stack, create_trials_in_moto, summary  # noqa: F401

GROUP = "kennel-models"
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def write_model(folder: Path, val: float, test: float, agreement: float | None, sha: str | None) -> Path:
    """A model directory whose manifest carries the figures the registry records."""
    folder.mkdir(parents=True)
    manifest = {
        "format": "kennel-model",
        "format_version": 2,
        "metrics": {"val_accuracy": val, "test_accuracy": test, "val_loss": 0.7},
        "provenance": {"git_sha": sha, "training_job": None},
    }
    if agreement is not None:
        manifest["quantization"] = {"agreement": agreement, "passed": True}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "model.onnx").write_bytes(str(val).encode() * 64)
    return folder


@pytest.fixture
def registry_doc(stack_doc: dict) -> dict:
    return {**stack_doc, "registry": {}}


@pytest.fixture
def registry_stack(registry_doc: dict, write_stack) -> Path:
    return write_stack(registry_doc, "registry.toml")


def models(stack: Path, *argv: str) -> int:
    return cli.main(["models", "--stack", str(stack), *argv])


def described(number: int) -> dict:
    sagemaker = boto3.client("sagemaker")
    for summary_ in sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]:
        if summary_["ModelPackageVersion"] == number:
            return sagemaker.describe_model_package(ModelPackageName=summary_["ModelPackageArn"])
    raise AssertionError(f"no version {number}")


def s3_json(uri: str) -> tuple[dict, str]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    answer = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    return json.loads(answer["Body"].read()), answer["ContentType"]


def test_models_register_uploads_like_up_and_registers_a_pending_version(
    registry_stack, make_run, tmp_path, capsys
):
    model = write_model(tmp_path / "m1", 0.81, 0.8, 0.995, "0a1b2c3d4e5f60718293")
    assert models(registry_stack, "register", str(model)) == 0
    assert (
        f"models register: registered version 1 (PendingManualApproval) in {GROUP}" in capsys.readouterr().out
    )

    version = described(1)
    run = make_run(path=registry_stack)
    archive_uri = f"s3://kennel-example-data/{s3.model_key(run, s3.archive(model))}"
    spec = version["InferenceSpecification"]
    assert spec["Containers"] == [{"Image": f"{ECR}/kennel-serve:test1", "ModelDataUrl": archive_uri}]
    # What the serving image decodes and encodes, as its own codec tables say.
    assert set(spec["SupportedContentTypes"]) == set(codecs.DECODERS)
    assert set(spec["SupportedResponseMIMETypes"]) == set(codecs.ENCODERS)
    assert spec["SupportedRealtimeInferenceInstanceTypes"] == [example_doc()["endpoint"]["instance_type"]]
    assert spec["SupportedTransformInstanceTypes"] == [example_doc()["transform"]["instance_type"]]
    assert version["ModelApprovalStatus"] == "PendingManualApproval"
    assert version["MetadataProperties"] == {"CommitId": "0a1b2c3d4e5f60718293"}
    assert version["CustomerMetadataProperties"] == {"git_revision": "0a1b2c3d4e5f60718293"}
    statistics = version["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["ContentType"] == "application/json"
    document, content_type = s3_json(statistics["S3Uri"])
    assert content_type == "application/json"
    assert document == {
        "multiclass_classification_metrics": {
            "validation_accuracy": {"value": 0.81},
            "test_accuracy": {"value": 0.8},
            "int8_agreement": {"value": 0.995},
        }
    }
    # The archive is where `up` would put it, with the same bytes.
    bucket, key = archive_uri.removeprefix("s3://").split("/", 1)
    assert boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == s3.archive(model)


def test_register_without_a_registry_table_says_to_add_one(stack_file, tmp_path, capsys):
    model = write_model(tmp_path / "m1", 0.81, 0.8, None, None)
    assert models(stack_file, "register", str(model)) == 1
    assert "has no [registry] table: add one (empty is enough) to register models" in capsys.readouterr().err


def register_three(stack: Path, tmp_path: Path) -> None:
    """Version 1 approved, 2 rejected with a reason, 3 pending."""
    figures = [
        (0.81, 0.8, 0.995, "1111111111112222"),
        (0.79, 0.78, None, "3333333333334444"),
        (0.86, 0.85, 0.99, None),
    ]
    for index, (val, test, agreement, sha) in enumerate(figures, 1):
        assert (
            models(stack, "register", str(write_model(tmp_path / f"m{index}", val, test, agreement, sha)))
            == 0
        )
    assert models(stack, "approve", "1") == 0
    assert models(stack, "reject", "2", "--reason", "mistakes huskies for malamutes") == 0


def test_list_shows_every_version_newest_first(registry_stack, tmp_path, capsys):
    register_three(registry_stack, tmp_path)
    out = capsys.readouterr().out
    assert f"models approve: {GROUP} version 1 (Approved)" in out
    assert f"models reject: {GROUP} version 2 (Rejected): mistakes huskies for malamutes" in out

    assert models(registry_stack, "list") == 0
    created = {n: described(n)["CreationTime"].astimezone(UTC).strftime("%Y-%m-%d %H:%M") for n in (1, 2, 3)}
    assert capsys.readouterr().out.splitlines() == [
        "version  status                 created (UTC)     val acc  test acc  INT8 agreement  "
        "training job  revision      reason",
        f"3        PendingManualApproval  {created[3]}  0.8600   0.8500    0.9900          "
        "-             -             -",
        f"2        Rejected               {created[2]}  0.7900   0.7800    -               "
        "-             333333333333  mistakes huskies for malamutes",
        f"1        Approved               {created[1]}  0.8100   0.8000    0.9950          "
        "-             111111111111  -",
    ]


def test_approving_a_version_that_does_not_exist_says_how_to_see_them(registry_stack, capsys):
    assert models(registry_stack, "approve", "7") == 1
    assert f"model package group {GROUP} has no version 7: `python -m deploy models --stack" in (
        capsys.readouterr().err
    )


def put_archive(uri: str, model: Path) -> None:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key=key, Body=s3.archive(model))


def test_train_wait_registers_the_jobs_model_with_its_metrics(registry_stack, session, tmp_path, capsys):
    model = write_model(tmp_path / "trained", 0.83, 0.82, 0.996, "abcdefabcdef0000")

    def job_output(params, **kwargs) -> None:
        output = params["OutputDataConfig"]["S3OutputPath"]
        put_archive(f"{output}{params['TrainingJobName']}/output/model.tar.gz", model)

    session.events.register("before-parameter-build.sagemaker.CreateTrainingJob", job_output)
    assert cli.main(["train", "--stack", str(registry_stack), "--wait"]) == 0
    out = capsys.readouterr().out
    name = out.split("started ", 1)[1].split()[0]
    assert f"train: registered version 1 (PendingManualApproval) in {GROUP}" in out
    version = described(1)
    url = f"s3://kennel-example-data/kennel/training/{name}/output/model.tar.gz"
    assert version["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == url
    assert version["MetadataProperties"] == {"GeneratedBy": name, "CommitId": "abcdefabcdef0000"}
    assert version["CustomerMetadataProperties"] == {"training_job": name, "git_revision": "abcdefabcdef0000"}
    document, _ = s3_json(version["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"])
    assert document["multiclass_classification_metrics"]["test_accuracy"] == {"value": 0.82}


def test_a_job_output_without_a_manifest_is_refused(registry_stack, session, tmp_path, capsys):
    def job_output(params, **kwargs) -> None:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w:gz") as tar:
            info = tarfile.TarInfo("model.pth")
            tar.addfile(info, io.BytesIO(b""))
        bucket = "kennel-example-data"
        boto3.client("s3").create_bucket(Bucket=bucket)
        key = f"kennel/training/{params['TrainingJobName']}/output/model.tar.gz"
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=raw.getvalue())

    session.events.register("before-parameter-build.sagemaker.CreateTrainingJob", job_output)
    assert cli.main(["train", "--stack", str(registry_stack), "--wait"]) == 1
    assert "holds no manifest.json: it is not a Kennel model" in capsys.readouterr().err


@pytest.fixture
def registry_commented_stack(commented_stack):  # noqa: F811
    commented_stack.write_text(commented_stack.read_text() + "\n[registry]\n")
    return commented_stack


def promote_best(stack: Path, stubbed, tmp_path: Path, capsys) -> str:
    assert cli.main(["tune", "--stack", str(stack)]) == 0
    tuning = capsys.readouterr().out.split("started ", 1)[1].split()[0]
    create_trials_in_moto(tuning)
    best = f"{tuning}-002-1b2c3d4e"
    model = write_model(tmp_path / "best", 0.86, 0.84, None, "feedfacefeedface")
    put_archive(f"s3://kennel-example-data/kennel/training/{best}/output/model.tar.gz", model)
    listing = stubbed("ListTrainingJobsForHyperParameterTuningJob")
    listing.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": [summary(tuning, *t) for t in TRIALS]},
        {"HyperParameterTuningJobName": tuning},
    )
    assert cli.main(["promote", "--stack", str(stack), tuning]) == 0
    return best


def test_promote_registers_the_best_trial_and_writes_it_into_model(
    registry_commented_stack, stubbed, tmp_path, capsys
):
    best = promote_best(registry_commented_stack, stubbed, tmp_path, capsys)
    out = capsys.readouterr().out
    assert f"promote: registered version 1 (PendingManualApproval) in {GROUP}" in out
    assert f"[model] now serves {best}" in out
    assert described(1)["MetadataProperties"]["GeneratedBy"] == best


def test_promote_leaves_a_stack_that_serves_from_the_registry_as_it_is(
    registry_commented_stack, stubbed, tmp_path, capsys
):
    text = registry_commented_stack.read_text()
    text = text.replace('dir = "', '# dir = "', 1).replace(
        '# package = "latest-approved"', 'package = "latest-approved"'
    )
    registry_commented_stack.write_text(text)
    best = promote_best(registry_commented_stack, stubbed, tmp_path, capsys)
    assert "[model] now serves" not in capsys.readouterr().out
    assert registry_commented_stack.read_text() == text
    assert described(1)["MetadataProperties"]["GeneratedBy"] == best


@pytest.fixture
def latest_stack(registry_doc, write_stack) -> Path:
    model = {"package": "latest-approved"}
    return write_stack({**registry_doc, "model": model}, "latest.toml")


def serving_package() -> str:
    sagemaker = boto3.client("sagemaker")
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName="kennel-endpoint")["EndpointConfigName"]
    )
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    return model["PrimaryContainer"]["ModelPackageName"]


def test_up_serves_only_an_approved_version_and_plan_says_which(latest_stack, make_run, tmp_path):
    assert models(latest_stack, "register", str(write_model(tmp_path / "m1", 0.8, 0.79, None, None))) == 0
    with pytest.raises(DeployError) as refused:
        lifecycle.up(make_run(path=latest_stack))
    assert str(refused.value) == (
        f'model.package = "latest-approved", but model package group {GROUP} has no approved version: '
        "register one (`train --wait`, `promote` or `models register`), check it with `models list`, then "
        f"approve it with `python -m deploy models --stack {latest_stack} approve N`"
    )
    assert boto3.client("sagemaker").list_endpoints()["Endpoints"] == []  # refused before anything

    assert models(latest_stack, "approve", "1") == 0
    run = make_run(path=latest_stack)
    lifecycle.up(run)
    first = described(1)["ModelPackageArn"]
    assert serving_package() == first
    assert registry.serving_version(run).number == 1
    again = lifecycle.up(make_run(dry_run=True, path=latest_stack))
    assert again.changed() == []
    (kept,) = [str(c) for c in again.changes if c.kind == "sagemaker model"]
    assert kept.endswith(f"({GROUP} version 1 (Approved), serving now)")

    # A newer approved version: `plan` says it would serve, and what it replaces (moto cannot update an
    # endpoint, so `up` itself stops here; test_stubbed.py covers the blue/green update).
    assert models(latest_stack, "register", str(write_model(tmp_path / "m2", 0.85, 0.84, None, None))) == 0
    assert models(latest_stack, "approve", "2") == 0
    plan = lifecycle.up(make_run(dry_run=True, path=latest_stack))
    (line,) = [str(c) for c in plan.changes if c.kind == "sagemaker model" and c.action == "create"]
    assert line.endswith(f"({GROUP} version 2 (Approved); replaces version 1; network isolated)")
    # The pre-flight would run version 2's archive against version 1's, both found through the registry.
    said: list[str] = []
    dry = make_run(dry_run=True, path=latest_stack)
    dry.say = said.append
    preflight.ensure_preflight(dry, enabled=True)
    archives = [registry.model_data_url(run, described(n)["ModelPackageArn"]) for n in (2, 1)]
    (would,) = said
    assert would.startswith("pre-flight: would run " + archives[0])
    assert would.endswith(f"on 8 images, compared with the serving model {archives[1]}")


def test_a_version_number_that_is_not_approved_is_refused(registry_doc, write_stack, make_run, tmp_path):
    stack = write_stack({**registry_doc, "model": {"package": 1}}, "one.toml")
    assert models(stack, "register", str(write_model(tmp_path / "m1", 0.8, 0.79, None, None))) == 0
    assert models(stack, "reject", "1", "--reason", "leaks test images") == 0
    with pytest.raises(DeployError) as refused:
        lifecycle.up(make_run(path=stack))
    assert str(refused.value) == (
        f"model.package = 1: version 1 of model package group {GROUP} is Rejected: leaks test images; "
        f"only an approved version is served: approve it with `python -m deploy models --stack {stack} "
        "approve 1` or name an approved version"
    )


def test_rollback_rejects_the_version_up_deployed(latest_stack, make_run, tmp_path):
    assert models(latest_stack, "register", str(write_model(tmp_path / "m1", 0.8, 0.79, None, None))) == 0
    assert models(latest_stack, "approve", "1") == 0
    run = lifecycle.up(make_run(path=latest_stack))
    deployed = registry.serving_version(run)
    heard = []
    # What up hands the endpoint step for a release SageMaker rolls back (moto cannot roll one back).
    lifecycle.rejecting(run, deployed, heard.append)("alarm kennel-alarm-endpoint-5xx-rate fired")
    rejected = registry.version(run, deployed.number)
    reason = "rolled back by SageMaker: alarm kennel-alarm-endpoint-5xx-rate fired"
    assert (rejected.status, rejected.reason) == ("Rejected", reason)
    assert heard == ["alarm kennel-alarm-endpoint-5xx-rate fired"]
    with pytest.raises(DeployError, match="has no approved version"):
        lifecycle.up(make_run(path=latest_stack))


def test_down_deletes_the_versions_their_statistics_and_the_group(
    registry_stack, make_run, stubbed, tmp_path
):
    for index in (1, 2):
        model = write_model(tmp_path / f"m{index}", 0.8 + index / 100, 0.79, None, None)
        assert models(registry_stack, "register", str(model)) == 0
    run = make_run(path=registry_stack)
    lifecycle.up(run)
    packages = stubbed("DeleteModelPackage")
    for number in (2, 1):
        packages.add_response(
            "delete_model_package", {}, {"ModelPackageName": described(number)["ModelPackageArn"]}
        )
    groups = stubbed("DeleteModelPackageGroup")
    groups.add_response("delete_model_package_group", {}, {"ModelPackageGroupName": GROUP})
    done = lifecycle.down(make_run(path=registry_stack))
    deleted = [
        (c.kind, c.name) for c in done.changed() if "model package" in c.kind or "statistics" in c.kind
    ]
    assert deleted[:2] == [("model package", f"{GROUP}/2"), ("model package", f"{GROUP}/1")]
    assert deleted[-1] == ("model package group", GROUP)
    listed = boto3.client("s3").list_objects_v2(Bucket="kennel-example-data", Prefix="kennel/registry/")
    assert listed.get("KeyCount") == 0


def test_every_registry_call_is_in_the_guides_deployer_policy(latest_stack, session, tmp_path):
    called: set[str] = set()
    session.events.register("before-call.sagemaker", lambda model, **kwargs: called.add(model.name))
    assert models(latest_stack, "register", str(write_model(tmp_path / "m1", 0.8, 0.79, None, None))) == 0
    assert models(latest_stack, "approve", "1") == 0
    assert models(latest_stack, "list") == 0
    assert cli.main(["up", "--stack", str(latest_stack), "--no-preflight"]) == 0
    registry_calls = {name for name in called if "ModelPackage" in name}
    assert registry_calls >= {
        "CreateModelPackageGroup",
        "CreateModelPackage",
        "DescribeModelPackage",
        "DescribeModelPackageGroup",
        "ListModelPackages",
        "UpdateModelPackage",
    }
    granted = {a for s in statements(docs_block("deployer-policy")) for a in as_list(s["Action"])}
    wanted = registry_calls | {"DeleteModelPackage", "DeleteModelPackageGroup"}
    assert {f"sagemaker:{name}" for name in wanted} <= granted


@pytest.mark.parametrize(
    ("model", "registry_table", "message"),
    [
        (
            {"package": "latest-approved"},
            None,
            "model.package: serves a version from the model registry, so the stack needs a [registry]",
        ),
        (
            {"package": 2, "dir": "m"},
            {},
            "model: set exactly one of model.dir, model.training_job and model.package",
        ),
        ({"package": 0}, {}, 'model.package: must be a version number (1 or more) or "latest-approved"'),
        (
            {"package": "newest"},
            {},
            'model.package: must be a version number (1 or more) or "latest-approved"',
        ),
        ({"package": 2}, {"approval": "auto"}, "registry.approval: unknown key"),
    ],
)
def test_stack_file_package_and_registry_mistakes(model, registry_table, message, tmp_path):
    doc = example_doc()
    doc["model"] = model
    if registry_table is not None:
        doc["registry"] = registry_table
    with pytest.raises(StackError) as raised:
        parse(doc, tmp_path)
    assert str(raised.value).startswith(message)


def test_the_registry_table_turns_it_on(tmp_path):
    doc = {**example_doc(), "registry": {"description": "dog breeds"}, "model": {"package": 3}}
    stack = parse(doc, tmp_path)
    assert (stack.registry.description, stack.model.package, stack.model_package_group) == (
        "dog breeds",
        3,
        GROUP,
    )


def test_the_hosting_role_reads_what_a_registered_version_holds(registry_stack, make_run, tmp_path):
    """CreateModel from a version runs the version's image and archive as the hosting role: the role
    `up` makes already reads both, so the registry adds nothing to it."""
    assert models(registry_stack, "register", str(write_model(tmp_path / "m1", 0.8, 0.79, None, None))) == 0
    (container,) = described(1)["InferenceSpecification"]["Containers"]
    bucket_key = container["ModelDataUrl"].removeprefix("s3://")
    repository = container["Image"].split("/", 1)[1].rsplit(":", 1)[0]
    policy = iam.hosting_policy(make_run(path=registry_stack))
    grants = {
        (a, r) for s in statements(policy) for a in as_list(s["Action"]) for r in as_list(s["Resource"])
    }
    assert any(
        a == "s3:GetObject" and fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket_key}", r) for a, r in grants
    )
    assert ("ecr:BatchGetImage", f"arn:aws:ecr:us-east-1:123456789012:repository/{repository}") in grants
