"""ECR repositories (scan on push, immutable tags, a lifecycle policy) and the images in them.

Images are tagged with the run's release tag (`Run.release_tag`: the git revision of containers/, or
`images.tag`), so a tag names one build and never moves. `ensure_image` hands building and pushing to the
run's publisher (`Run.publish`): by default the local image builder (images/), then `push`.
"""

import base64
import contextlib
import json
from typing import TYPE_CHECKING

from deploy.aws import DeployError, Run

if TYPE_CHECKING:
    import docker

IMAGES = ("serve", "train")
# What `up` pushes: the training image is built and pushed by `train` and `tune`, when a job needs it.
UP_IMAGES = ("serve",)
LIFECYCLE_POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "drop untagged layers after a day",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": "keep the 20 newest images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20},
            "action": {"type": "expire"},
        },
    ]
}


def build_and_push(image: str, repository: str, tag: str, auth: dict[str, str]) -> str:
    """The default publisher: the local image builder's build of containers/IMAGE, pushed."""
    import images  # the Docker SDK too: only `up`, `train` and `tune` load it, when they build

    return push(images.build(image).tag, repository, tag, auth)


class PushError(DeployError):
    """A failed `docker push`, with the registry's own message."""


def push(
    local_tag: str,
    repository: str,
    tag: str,
    auth: dict[str, str],
    client: "docker.DockerClient | None" = None,
) -> str:
    """Tags `local_tag` as repository:tag, pushes it with `auth` (username, password) and returns the
    pushed manifest's digest. The extra local tag is removed afterwards."""
    import docker

    client = client or docker.from_env()
    image = client.images.get(local_tag)
    image.tag(repository, tag)
    digest = ""
    try:
        for chunk in client.api.push(repository, tag, auth_config=auth, stream=True, decode=True):
            if "error" in chunk:
                raise PushError(f"pushing {repository}:{tag} failed: {chunk['error'].strip()}")
            digest = chunk.get("aux", {}).get("Digest", digest)
    finally:
        client.images.remove(f"{repository}:{tag}", noprune=True)
    if not digest:
        raise PushError(f"pushing {repository}:{tag} reported no digest")
    return digest


def registry(run: Run) -> str:
    return f"{run.account}.dkr.ecr.{run.stack.region}.amazonaws.com"


def image_uri(run: Run, image: str) -> str:
    return f"{registry(run)}/{run.stack.repository(image)}:{run.release_tag}"


def _describe(run: Run, name: str) -> dict | None:
    ecr = run.client("ecr")
    try:
        return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        return None


def _lifecycle(run: Run, name: str) -> dict | None:
    ecr = run.client("ecr")
    try:
        text = ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
    except (ecr.exceptions.RepositoryNotFoundException, ecr.exceptions.LifecyclePolicyNotFoundException):
        return None
    return json.loads(text)


def ensure_repository(run: Run, image: str) -> None:
    ecr, name = run.client("ecr"), run.stack.repository(image)
    repo = _describe(run, name)
    if repo is None:
        if run.apply("ecr repository", name, "create", "scan on push, immutable tags"):
            ecr.create_repository(
                repositoryName=name,
                imageTagMutability="IMMUTABLE",
                imageScanningConfiguration={"scanOnPush": True},
                tags=run.tag_list(),
            )
    elif repo["imageTagMutability"] != "IMMUTABLE" or not repo["imageScanningConfiguration"]["scanOnPush"]:
        if run.apply("ecr repository", name, "update", "scan on push, immutable tags"):
            ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE")
            ecr.put_image_scanning_configuration(
                repositoryName=name, imageScanningConfiguration={"scanOnPush": True}
            )
    else:
        run.apply("ecr repository", name, "unchanged")
    current = _lifecycle(run, name) if repo else None
    if current == LIFECYCLE_POLICY:
        run.apply("ecr lifecycle policy", name, "unchanged")
    elif run.apply("ecr lifecycle policy", name, "create" if current is None else "update"):
        ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(LIFECYCLE_POLICY))


def login(run: Run) -> dict[str, str]:
    """Docker credentials from ECR's authorization token (base64 of "AWS:<password>")."""
    data = run.client("ecr").get_authorization_token()["authorizationData"][0]
    username, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    return {"username": username, "password": password}


def _has_tag(run: Run, name: str, tag: str) -> bool:
    ecr = run.client("ecr")
    try:
        ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": tag}])
        return True
    except (ecr.exceptions.RepositoryNotFoundException, ecr.exceptions.ImageNotFoundException):
        return False


def ensure_image(run: Run, image: str) -> str:
    """Builds and pushes the image (`run.publish`) unless its tag is already in the repository; returns
    its URI."""
    name, tag = run.stack.repository(image), run.release_tag
    uri = image_uri(run, image)
    if _has_tag(run, name, tag):
        run.apply("image", uri, "unchanged")
    elif run.apply("image", uri, "create", "build and push"):
        auth = login(run)
        repository = uri.rsplit(":", 1)[0]
        (run.publish or build_and_push)(image, repository, tag, auth)
    return uri


def delete_repository(run: Run, image: str) -> None:
    ecr, name = run.client("ecr"), run.stack.repository(image)
    if _describe(run, name) is None or not run.apply("ecr repository", name, "delete", "with its images"):
        return
    with contextlib.suppress(ecr.exceptions.RepositoryNotFoundException):
        ecr.delete_repository(repositoryName=name, force=True)
