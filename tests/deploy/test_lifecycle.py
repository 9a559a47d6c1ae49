"""plan, up, down and status against moto over HTTP, read back through the AWS APIs."""

import base64
import gzip
import io
import json
import tarfile
import urllib.request

import boto3
import pytest

from deploy import cli, ecr, function, iam, lifecycle
from deploy.stack import StackError, load, parse
from tests.deploy.test_kinds_stack import serverless_doc


def actions(run) -> list[tuple[str, str, str]]:
    return [(c.kind, c.name, c.action) for c in run.changes]


def test_up_creates_every_resource_as_configured(make_run, stack_file):
    run = lifecycle.up(make_run())
    stack = load(stack_file)
    tags = {"project": "kennel", "kennel:stack": "kennel", "owner": "ml-platform", "cost-center": "dogs"}

    ecr_client = boto3.client("ecr")
    # The training image is `train`'s and `tune`'s to push; a serving stack never builds it.
    assert [r["repositoryName"] for r in ecr_client.describe_repositories()["repositories"]] == [
        "kennel-serve"
    ]
    for image in ("serve",):
        repo = ecr_client.describe_repositories(repositoryNames=[f"kennel-{image}"])["repositories"][0]
        assert repo["imageTagMutability"] == "IMMUTABLE"
        assert repo["imageScanningConfiguration"]["scanOnPush"] is True
        policy = ecr_client.get_lifecycle_policy(repositoryName=f"kennel-{image}")["lifecyclePolicyText"]
        assert json.loads(policy) == ecr.LIFECYCLE_POLICY
        assert ecr_client.describe_images(repositoryName=f"kennel-{image}")["imageDetails"][0][
            "imageTags"
        ] == ["test1"]
        listed = ecr_client.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
        assert {t["Key"]: t["Value"] for t in listed} == tags

    iam_client = boto3.client("iam")
    for name, service, policy in iam.roles(run):
        role = iam_client.get_role(RoleName=name)["Role"]
        assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
            "Service": f"{service}.amazonaws.com"
        }
        assert iam_client.get_role_policy(RoleName=name, PolicyName="kennel")["PolicyDocument"] == policy
        assert {t["Key"]: t["Value"] for t in role["Tags"]} == tags

    groups = {g["logGroupName"]: g for g in boto3.client("logs").describe_log_groups()["logGroups"]}
    assert groups["/aws/sagemaker/Endpoints/kennel-endpoint"]["retentionInDays"] == 30
    assert groups["/aws/lambda/kennel-proxy"]["retentionInDays"] == 30

    sagemaker = boto3.client("sagemaker")
    described = sagemaker.describe_endpoint(EndpointName="kennel-endpoint")
    assert described["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["VariantName"] == "AllTraffic"
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.c5.xlarge", 1)
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 600
    assert variant["ModelDataDownloadTimeoutInSeconds"] == 600
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert (
        model["PrimaryContainer"]["Image"]
        == "123456789012.dkr.ecr.us-east-1.amazonaws.com/kennel-serve:test1"
    )
    assert model["ExecutionRoleArn"] == "arn:aws:iam::123456789012:role/kennel-sagemaker-hosting"
    listed = sagemaker.list_tags(ResourceArn=described["EndpointArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in listed} == tags

    bucket, key = model["PrimaryContainer"]["ModelDataUrl"][len("s3://") :].split("/", 1)
    archive = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive))) as tar:
        assert sorted(tar.getnames()) == ["manifest.json", "model.onnx"]

    aas = boto3.client("application-autoscaling")
    target = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"][0]
    assert target["ResourceId"] == "endpoint/kennel-endpoint/variant/AllTraffic"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    scaling = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"][0]
    tracking = scaling["TargetTrackingScalingPolicyConfiguration"]
    assert (
        tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
        == "SageMakerVariantInvocationsPerInstance"
    )
    assert (tracking["TargetValue"], tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"]) == (
        600,
        300,
        60,
    )

    aws_lambda = boto3.client("lambda")
    live = aws_lambda.get_function_configuration(FunctionName="kennel-proxy", Qualifier="live")
    assert live["Version"] == "1"
    assert (live["Runtime"], live["Handler"], live["MemorySize"], live["Timeout"]) == (
        "python3.12",
        "kennel_proxy.proxy.handler",
        512,
        30,
    )
    assert live["Environment"]["Variables"] == {
        "SAGEMAKER_ENDPOINT_NAME": "kennel-endpoint",
        "KENNEL_MAX_ATTEMPTS": "3",
        "KENNEL_INVOKE_READ_TIMEOUT_S": "5",
    }
    assert live["Role"] == "arn:aws:iam::123456789012:role/kennel-lambda-proxy"
    assert live["CodeSha256"] == function.code_sha256(function.package(stack.function.source_dir))
    concurrency = aws_lambda.get_function_concurrency(FunctionName="kennel-proxy")
    assert concurrency["ReservedConcurrentExecutions"] == 20
    url = aws_lambda.get_function_url_config(FunctionName="kennel-proxy", Qualifier="live")
    assert url["AuthType"] == "AWS_IAM"
    fn_tags = aws_lambda.list_tags(Resource=live["FunctionArn"].rsplit(":", 1)[0])["Tags"]
    assert fn_tags == tags


def test_second_up_changes_nothing_and_plan_then_shows_no_change(make_run):
    lifecycle.up(make_run())
    assert lifecycle.up(make_run()).changed() == []
    assert lifecycle.up(make_run(dry_run=True)).changed() == []


def test_plan_changes_nothing_and_matches_what_up_then_does(make_run):
    planned = lifecycle.up(make_run(dry_run=True))
    assert boto3.client("ecr").describe_repositories()["repositories"] == []
    assert boto3.client("iam").list_roles()["Roles"] == []
    assert boto3.client("sagemaker").list_endpoints()["Endpoints"] == []
    done = lifecycle.up(make_run())
    assert actions(planned) == actions(done)
    assert {c.action for c in done.changes} == {"create"}


def test_plan_matches_an_update_of_lambda_and_scaling(make_run, stack_doc, write_stack):
    lifecycle.up(make_run())
    stack_doc["lambda"]["memory_mb"] = 1024
    stack_doc["autoscaling"]["max_instances"] = 6
    changed = write_stack(stack_doc, "changed.toml")
    planned = lifecycle.up(make_run(dry_run=True, path=changed))
    done = lifecycle.up(make_run(path=changed))
    assert actions(planned) == actions(done)
    assert {(c.kind, c.action) for c in done.changed()} == {
        ("scalable target", "update"),
        ("lambda configuration", "update"),
        ("lambda alias", "update"),
        # The at-maximum alarm and the dashboard's instance graph follow the auto-scaling maximum.
        ("alarm", "update"),
        ("dashboard", "update"),
    }
    live = boto3.client("lambda").get_function_configuration(FunctionName="kennel-proxy", Qualifier="live")
    assert (live["Version"], live["MemorySize"]) == ("2", 1024)
    assert "  scaling: 1..6 instances" in lifecycle.status(make_run())


def test_down_removes_everything_and_is_safe_to_repeat(make_run):
    lifecycle.up(make_run())
    removed = lifecycle.down(make_run())
    assert {c.action for c in removed.changes} == {"delete"}
    assert boto3.client("ecr").describe_repositories()["repositories"] == []
    assert boto3.client("iam").list_roles()["Roles"] == []
    sagemaker = boto3.client("sagemaker")
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert sagemaker.list_models()["Models"] == []
    assert boto3.client("lambda").list_functions()["Functions"] == []
    assert boto3.client("logs").describe_log_groups()["logGroups"] == []
    aas = boto3.client("application-autoscaling")
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket="kennel-example-data")
    assert lifecycle.down(make_run()).changes == []
    assert lifecycle.status(make_run()) == ["endpoint kennel-endpoint: absent", "lambda kennel-proxy: absent"]


def test_cli_plan_and_status(stack_file, capsys):
    assert cli.main(["plan", "--stack", str(stack_file)]) == 0
    out = capsys.readouterr().out
    assert "would create  endpoint" in out and "plan: 31 change(s), 0 unchanged" in out
    assert cli.main(["status", "--stack", str(stack_file)]) == 0
    assert "endpoint kennel-endpoint: absent" in capsys.readouterr().out


def test_invoke_goes_through_the_live_alias(make_run, stack_file, tmp_path, capsys, session):
    lifecycle.up(make_run())
    image = tmp_path / "dog.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    called: list[tuple[str, str]] = []
    session.events.register(
        "before-parameter-build.lambda.Invoke",
        lambda params, **kw: called.append((params["FunctionName"], params.get("Qualifier"))),
    )
    assert cli.main(["invoke", "--stack", str(stack_file), str(image)]) == 0
    assert called == [("kennel-proxy", "live")]
    # moto's in-process Lambda echoes the event it was given: a function URL request carrying the image.
    assert json.loads(capsys.readouterr().out) == {
        "version": "2.0",
        "rawPath": "/invocations",
        "headers": {"content-type": "image/jpeg", "accept": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/invocations"}},
        "body": base64.b64encode(image.read_bytes()).decode(),
        "isBase64Encoded": True,
    }


def test_invoke_direct_reads_the_endpoint_answer(make_run, stack_file, tmp_path, capsys, aws):
    body = {"results": [{"Body": '{"label": "001.Affenpinscher"}', "ContentType": "application/json"}]}
    body.update(account_id="123456789012", region="us-east-1")
    request = urllib.request.Request(
        f"{aws}/moto-api/static/sagemaker/endpoint-results", data=json.dumps(body).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=10).read()
    image = tmp_path / "dog.png"
    image.write_bytes(b"PNG stand-in: moto reads request bodies as UTF-8")
    assert cli.main(["invoke", "--stack", str(stack_file), str(image), "--direct"]) == 0
    assert json.loads(capsys.readouterr().out) == {"label": "001.Affenpinscher"}


def test_the_model_is_network_isolated_unless_the_stack_opens_it(make_run, stack_doc, write_stack, session):
    sent: list[dict] = []
    session.events.register(
        "before-parameter-build.sagemaker.CreateModel", lambda params, **kw: sent.append(dict(params))
    )
    planned = lifecycle.up(make_run(dry_run=True))
    (model,) = [c for c in planned.changes if c.kind == "sagemaker model"]
    assert model.detail.endswith("; network isolated")
    lifecycle.up(make_run())
    assert [p["EnableNetworkIsolation"] for p in sent] == [True]

    stack_doc["endpoint"]["network_isolation"] = False
    opened = write_stack(stack_doc, "opened.toml")
    planned = lifecycle.up(make_run(dry_run=True, path=opened))
    (model,) = [c for c in planned.changed() if c.kind == "sagemaker model" and c.action == "create"]
    assert model.detail.endswith("; network open (endpoint.network_isolation = false)")
    # A new model, so the endpoint moves to it through a new config (blue/green, stubbed elsewhere).
    assert {c.kind for c in planned.changed()} >= {"sagemaker model", "endpoint config", "endpoint"}


def test_a_serverless_endpoint_refuses_network_isolation(tmp_path):
    doc = serverless_doc()
    assert parse(doc, tmp_path).endpoint.network_isolation is False
    doc["endpoint"]["network_isolation"] = True
    with pytest.raises(StackError, match=r"endpoint\.network_isolation: does not apply to a serverless"):
        parse(doc, tmp_path)
