"""A real push: Debian's docker-registry on a free loopback port with htpasswd auth stands in for ECR's
registry, logged in with the credentials decoded from ECR's authorization token, then the image pulled
back. The publisher that sends images there instead of to ECR is the tests' own (`to_local_registry`)."""

import base64
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import boto3
import docker
import pytest

from deploy import ecr, lifecycle
from deploy.aws import Publisher, Run
from deploy.stack import load
from tests.conftest import free_port

pytestmark = pytest.mark.container
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)


def to_local_registry(registry: str, local_tag: str, client: docker.DockerClient) -> Publisher:
    """A publisher for a run (`Run.publish`) that pushes `local_tag` to the same repository path on
    `registry` with the ECR login it is given, then records the pushed manifest in (moto's) ECR
    repository, so that ECR answers as it would after a push to ECR itself."""

    def publish(image: str, repository: str, tag: str, auth: dict[str, str]) -> str:
        path = repository.split("/", 1)[1]
        digest = ecr.push(local_tag, f"{registry}/{path}", tag, auth, client=client)
        request = urllib.request.Request(f"http://{registry}/v2/{path}/manifests/{digest}")
        request.add_header("Accept", ", ".join(MANIFEST_TYPES))
        login = base64.b64encode(f"{auth['username']}:{auth['password']}".encode()).decode()
        request.add_header("Authorization", f"Basic {login}")
        with urllib.request.urlopen(request, timeout=30) as response:
            manifest, media_type = response.read().decode(), response.headers["Content-Type"]
        boto3.client("ecr").put_image(
            repositoryName=path, imageManifest=manifest, imageManifestMediaType=media_type, imageTag=tag
        )
        return digest

    return publish


@pytest.fixture
def tiny_image(docker_client) -> Iterator[str]:
    """A one-file image built FROM scratch: nothing to pull, a few hundred bytes to push."""
    tag = f"kennel-deploy-test:{uuid.uuid4().hex[:12]}"
    dockerfile = b'FROM scratch\nLABEL org.kennel.test="registry push"\nCOPY Dockerfile /Dockerfile\n'
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)
    docker_client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.fixture
def registry(tmp_path, make_run) -> Iterator[str]:
    """docker-registry with htpasswd auth whose one user is ECR's (moto's) token user and password."""
    if not shutil.which("docker-registry") or not shutil.which("htpasswd"):
        # scripts/setup.sh installs both where apt-get exists; CI must run this test, a workstation may not.
        missing = "docker-registry and htpasswd are needed (apt-get install docker-registry apache2-utils)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    auth = ecr.login(make_run())
    (tmp_path / "htpasswd").write_text(
        subprocess.run(
            ["htpasswd", "-Bbn", auth["username"], auth["password"]],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    port = free_port()
    (tmp_path / "registry.yml").write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: kennel-test\n    path: {tmp_path / 'htpasswd'}\n"
    )
    log = (tmp_path / "registry.log").open("w")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(tmp_path / "registry.yml")], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}/v2/"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
        except urllib.error.HTTPError as err:
            if err.code == 401:
                break
        except OSError:
            time.sleep(0.1)
    else:
        pytest.fail(f"docker-registry did not start: {(tmp_path / 'registry.log').read_text()[-2000:]}")
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def test_up_publishes_through_the_tests_publisher_and_the_image_pulls_back(
    registry, tiny_image, docker_client, stack_doc, write_stack
):
    tag = stack_doc["images"]["tag"] = uuid.uuid4().hex[:12]
    stack = load(write_stack(stack_doc))
    publish = to_local_registry(registry, tiny_image, docker_client)

    run = lifecycle.up(Run(stack, poll_seconds=0, say=lambda line: None, publish=publish))
    uri = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/kennel-serve:{tag}"
    assert ("image", uri, "create") in [(c.kind, c.name, c.action) for c in run.changes]
    sagemaker = boto3.client("sagemaker")
    model = sagemaker.describe_model(ModelName=sagemaker.list_models()["Models"][0]["ModelName"])
    assert model["PrimaryContainer"]["Image"] == uri
    got = boto3.client("ecr").batch_get_image(repositoryName="kennel-serve", imageIds=[{"imageTag": tag}])
    manifest = json.loads(got["images"][0]["imageManifest"])
    assert manifest["config"]["digest"] == docker_client.images.get(tiny_image).id

    # Same tag again: already in the repository, so nothing is built or pushed.
    def refuse(*args: object) -> str:
        pytest.fail(f"published again: {args[:3]}")

    again = lifecycle.up(Run(stack, poll_seconds=0, say=lambda line: None, publish=refuse))
    assert again.changed() == []

    pulled = docker_client.images.pull(f"{registry}/kennel-serve", tag=tag, auth_config=ecr.login(run))
    try:
        assert pulled.id == docker_client.images.get(tiny_image).id
    finally:
        docker_client.images.remove(f"{registry}/kennel-serve:{tag}", force=True)


def test_push_without_the_tokens_password_is_refused(registry, tiny_image, docker_client):
    with pytest.raises(ecr.PushError):
        ecr.push(
            tiny_image,
            f"{registry}/kennel-serve",
            "refused",
            {"username": "AWS", "password": "wrong"},
            client=docker_client,
        )
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(f"{registry}/kennel-serve:refused")
