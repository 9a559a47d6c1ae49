"""moto as a real HTTP server on a free loopback port, reset before every test, and stack files that
point at it. boto3 finds it through AWS_ENDPOINT_URL, as deploy/ would find any other endpoint."""

import functools
import json
import logging
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore import xform_name
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

from deploy import cli
from deploy import stack as stack_module
from deploy.aws import Publisher, Run
from tests.conftest import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "stack.example.toml"
HANDLER = """import os


def handler(event, context):
    return {"endpoint": os.environ["SAGEMAKER_ENDPOINT_NAME"]}
"""


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _post(url: str, body: dict | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else b""
    urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=10).read()


@pytest.fixture(autouse=True)
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Dummy credentials, no profile files, one attempt per call (moto's 500s fail fast), fresh state."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    _post(f"{moto_url}/moto-api/reset")
    # Lambda invokes answer from moto's in-process backend instead of pulling runtime images.
    _post(f"{moto_url}/moto-api/config", {"lambda": {"use_docker": False}})
    return moto_url


@pytest.fixture
def pushed() -> list[str]:
    """The images a test's runs pushed with `publish`."""
    return []


@pytest.fixture
def publish(pushed: list[str]) -> Publisher:
    """The runs' publisher in these tests: the image is recorded in moto's ECR instead of built, and in
    `pushed` (test_registry.py pushes real images through its own publisher)."""

    def record(image: str, repository: str, tag: str, auth: dict[str, str]) -> str:
        pushed.append(image)
        return record_in_ecr(image, repository, tag, auth)

    return record


@pytest.fixture(autouse=True)
def command_line_publishes(monkeypatch: pytest.MonkeyPatch, publish: Publisher) -> None:
    """The runs `python -m deploy` makes publish with `publish` too."""
    monkeypatch.setattr(cli, "Run", functools.partial(Run, publish=publish))


def to_toml(doc: dict, table: str = "") -> str:
    """Enough TOML for stack files: scalars, lists of scalars and nested tables."""
    lines, tables = [], []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append(to_toml(value, f"{table}.{key}" if table else key))
        else:
            lines.append(f"{json.dumps(key)} = {json.dumps(value)}")
    head = [f"[{table}]"] if table else []
    return "\n".join(head + lines) + "\n\n" + "".join(tables)


def example_doc() -> dict:
    with EXAMPLE.open("rb") as fh:
        return tomllib.load(fh)


# The example's alarms that watch instances (none on serverless) and the proxy (none on async).
INSTANCE_ALARMS = ("cpu_percent", "at_max_instances_minutes")
LAMBDA_ALARMS = ("lambda_errors", "lambda_throttles", "lambda_duration_percent", "lambda_spillover")


def drop_alarms(doc: dict, keys: tuple[str, ...]) -> dict:
    for key in keys:
        doc.get("alarms", {}).pop(key, None)
    return doc


@pytest.fixture
def stack_doc(tmp_path: Path) -> dict:
    """The example stack with a small model directory, a stand-in handler and a fixed image tag."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "manifest.json").write_text(json.dumps({"format": "kennel-model", "format_version": 1}))
    (model / "model.onnx").write_bytes(b"\0" * 1024)
    source = tmp_path / "lambda"
    source.mkdir()
    (source / "proxy.py").write_text(HANDLER)
    (source / "test_proxy.py").write_text("def test_nothing():\n    pass\n")
    doc = example_doc()
    doc["model"]["dir"] = str(model)
    doc["lambda"]["source_dir"] = str(source)
    doc["lambda"]["provisioned_concurrency"] = 0  # moto has no provisioned-concurrency API (Stubber tests)
    doc["images"]["tag"] = "test1"
    return doc


@pytest.fixture
def write_stack(tmp_path: Path):
    def write(doc: dict, name: str = "stack.toml") -> Path:
        path = tmp_path / name
        path.write_text(to_toml(doc))
        return path

    return write


@pytest.fixture
def stack_file(stack_doc: dict, write_stack) -> Path:
    return write_stack(stack_doc)


@pytest.fixture
def make_run(stack_file: Path, publish: Publisher):
    def make(dry_run: bool = False, path: Path | None = None) -> Run:
        return Run(
            stack_module.load(path or stack_file),
            dry_run=dry_run,
            poll_seconds=0,
            say=lambda line: None,
            publish=publish,
        )

    return make


def record_in_ecr(image: str, repository: str, tag: str, auth: dict[str, str], client=None) -> str:
    """Stands in for build-and-push in the moto tests: registers a manifest as a push to ECR would
    (through `client` when given, else a new ECR client)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 2,
            "digest": "sha256:" + "0" * 64,
        },
        "layers": [],
    }
    name = repository.split("/", 1)[1]
    answer = (client or boto3.client("ecr")).put_image(
        repositoryName=name, imageManifest=json.dumps(manifest), imageTag=tag
    )
    return answer["image"]["imageId"]["imageDigest"]


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> boto3.Session:
    """A fresh default boto3 session: event hooks registered on it reach the clients deploy creates
    during the test (a client copies its session's hooks when it is made)."""
    fresh = boto3.Session()
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", fresh)
    return fresh


def overlay(session: boto3.Session, operation: str, script: list[dict]) -> list[dict]:
    """Lays the next entry of `script` over moto's answer to each `operation` call (the last one stays):
    the states a job passes through, which moto skips by finishing jobs at once (a None value removes
    the key). The call itself still goes to moto. Returns the list of answers the code under test saw."""
    seen: list[dict] = []

    def replace(parsed: dict, **kwargs) -> None:
        for key, value in script[min(len(seen), len(script) - 1)].items():
            if value is None:
                parsed.pop(key, None)
            else:
                parsed[key] = value
        seen.append(dict(parsed))

    session.events.register(f"after-call.sagemaker.{operation}", replace)
    return seen


@pytest.fixture
def stubbed(session: boto3.Session) -> Iterator:
    """stubbed(operation) -> a Stubber that answers that one SageMaker operation, which moto lacks, for
    the clients deploy makes; every other call still goes to moto. Each Stubber checks the request
    against the service model, and must be used up."""
    stubbers = []

    def make(operation: str) -> Stubber:
        # From its own session, so that it does not inherit the routing hooks below.
        client = boto3.Session().client("sagemaker", region_name="us-east-1")
        stubber = Stubber(client)
        stubber.activate()
        stubbers.append(stubber)

        def keep_params(params: dict, context: dict, **kwargs) -> None:
            context["kennel_api_params"] = dict(params)

        def answer(model, context: dict, **kwargs):
            parsed = getattr(client, xform_name(model.name))(**context["kennel_api_params"])
            return AWSResponse("https://stubbed.invalid", 200, {}, None), parsed

        session.events.register(f"before-parameter-build.sagemaker.{operation}", keep_params)
        session.events.register(f"before-call.sagemaker.{operation}", answer)
        return stubber

    yield make
    for stubber in stubbers:
        stubber.assert_no_pending_responses()


@pytest.fixture
def stub_client() -> Iterator:
    """stub_client(run, service) puts a Stubber-driven client of `service` into the run, for what moto
    cannot do; at the end of the test every scripted answer must have been used."""
    stubbers = []

    def make(run: Run, service: str) -> Stubber:
        client = boto3.client(service, region_name="us-east-1")
        run.clients[service] = client
        stubber = Stubber(client)
        stubber.activate()
        stubbers.append(stubber)
        return stubber

    yield make
    for stubber in stubbers:
        stubber.assert_no_pending_responses()
