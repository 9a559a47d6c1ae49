"""A real push: Debian's docker-registry on a free loopback port with htpasswd auth, logged in with
the credentials decoded from ECR's authorization token, then the image pulled back."""

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

from deploy import ecr
from deploy.aws import Run
from deploy.stack import load
from tests.conftest import free_port

pytestmark = pytest.mark.container


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


def test_push_with_ecr_login_records_in_ecr_and_pulls_back(
    registry, tiny_image, docker_client, stack_doc, write_stack
):
    stack_doc["images"]["registry"] = registry
    stack_doc["images"]["tag"] = uuid.uuid4().hex[:12]
    run = Run(load(write_stack(stack_doc)), say=lambda line: None)
    ecr.ensure_repository(run, "serve")
    pushed = {}

    def publish(image: str, repository: str, tag: str, auth: dict[str, str]) -> str:
        pushed["digest"] = ecr.push(tiny_image, repository, tag, auth, client=docker_client)
        return pushed["digest"]

    uri = ecr.ensure_image(run, "serve", publish)
    assert uri == f"{registry}/kennel-serve:{stack_doc['images']['tag']}"
    tag = stack_doc["images"]["tag"]
    got = boto3.client("ecr").batch_get_image(repositoryName="kennel-serve", imageIds=[{"imageTag": tag}])
    manifest = json.loads(got["images"][0]["imageManifest"])
    assert manifest["config"]["digest"] == docker_client.images.get(tiny_image).id
    assert pushed["digest"].startswith("sha256:")
    # Same tag again: already there, so nothing is built or pushed.
    assert ecr.ensure_image(run, "serve", publish=None) == uri

    auth = ecr.login(run)
    pulled = docker_client.images.pull(
        uri.rsplit(":", 1)[0], tag=stack_doc["images"]["tag"], auth_config=auth
    )
    try:
        assert pulled.id == docker_client.images.get(tiny_image).id
    finally:
        docker_client.images.remove(uri, force=True)


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
