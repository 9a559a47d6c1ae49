"""The pre-flight: before `up` sends a new model to AWS, the model runs in the local serving image.

    python -m deploy up --stack my-stack.toml                  # the pre-flight first, when Docker answers
    python -m deploy up --stack my-stack.toml --no-preflight   # straight to AWS
    python -m deploy plan --stack my-stack.toml                # says whether the pre-flight will run

The new model must load, answer /ping, and classify every sample image: `[endpoint.rollout]
preflight_images`, or a few generated pictures (bench/photos.py). When the endpoint already serves a
model whose model.tar.gz can be read from S3, that model answers the same images in the same image, and
the share of images on which both name the same top class is printed. A model that fails is refused
before anything is pushed or uploaded. Without Docker the pre-flight is skipped, and `up` says so.
"""

import contextlib
import json
import tarfile
import tempfile
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from deploy import poll, registry, s3
from deploy.aws import DeployError, Run, sagemaker_not_found

if TYPE_CHECKING:
    import docker

MOUNT = "/opt/ml/model"  # where SageMaker unpacks model.tar.gz, and the serving image reads it
GENERATED_IMAGES = 8
# A request to the local container, which answers small images in milliseconds once loaded.
REQUEST_SECONDS = 60


class PreflightError(DeployError):
    """A model that failed the pre-flight; nothing was sent to AWS."""


@dataclass(frozen=True)
class Sample:
    name: str
    body: bytes


@dataclass(frozen=True)
class Candidate:
    """The model `up` is about to serve: its archive's S3 URI, and its directory when it is local."""

    uri: str
    dir: Path | None

    @property
    def label(self) -> str:
        return str(self.dir) if self.dir else self.uri


def ensure_preflight(run: Run, enabled: bool) -> None:
    """`up`'s step before the images and the model go to AWS; `plan` says what it would do."""
    if not enabled:
        run.say("pre-flight: off")
        return
    candidate, serving = new_model(run), serving_model_data(run)
    if candidate.uri == serving:
        run.say(f"pre-flight: not needed, the endpoint already serves {candidate.uri}")
        return
    client, unavailable = docker_client()
    if client is None:
        run.say(f"pre-flight: skipped, Docker is not available ({unavailable})")
        return
    import images

    count = len(run.stack.endpoint.rollout.preflight_images) or GENERATED_IMAGES
    compare = f", compared with the serving model {serving}" if serving else ""
    what = f"{candidate.label} in {images.local_tag('serve')} on {count} images{compare}"
    if run.dry_run:
        run.say(f"pre-flight: would run {what}")
        return
    run.say(f"pre-flight: running {what}")
    samples = sample_images(run)
    with tempfile.TemporaryDirectory(prefix="kennel-preflight-") as tmp:
        new_dir = candidate.dir or fetch(run, candidate.uri, Path(tmp) / "new")
        image = images.build("serve", client=client).tag
        new = answers(run, client, image, new_dir, samples)
        run.say(f"pre-flight: {candidate.label} loaded, /ping 200, {len(new)}/{len(samples)} images answered")
        if serving:
            compare_with_serving(run, client, image, serving, Path(tmp) / "old", samples, new)


def new_model(run: Run) -> Candidate:
    """Where the archive of the model `up` serves is (or will be) in S3, as s3.ensure_model_data puts it."""
    stack = run.stack
    if stack.model.package is not None:
        return Candidate(registry.model_data_url(run, registry.deployable(run).arn), None)
    if stack.model.training_job:
        return Candidate(s3.training_output(run, stack.model.training_job), None)
    key = s3.model_key(run, run.model_archive)
    return Candidate(f"s3://{stack.bucket}/{key}", stack.model.dir)


def serving_model_data(run: Run) -> str | None:
    """The ModelDataUrl of the model the endpoint serves now; None without an endpoint."""
    sagemaker = run.client("sagemaker")
    try:
        described = sagemaker.describe_endpoint(EndpointName=run.stack.endpoint_name)
        config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
        model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    except ClientError as err:
        if sagemaker_not_found(err):
            return None
        raise
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    if "ModelPackageName" in container:  # a model from the registry names its version, not its archive
        return registry.model_data_url(run, container["ModelPackageName"])
    return container.get("ModelDataUrl")


def docker_client() -> tuple["docker.DockerClient | None", str]:
    """A client of a Docker engine that answers, or None and why not."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as err:  # the SDK missing, no socket, an engine that does not answer: all "no Docker"
        return None, str(err).splitlines()[0] if str(err) else type(err).__name__
    return client, ""


def sample_images(run: Run) -> list[Sample]:
    """The stack's pre-flight images, else generated photo-like JPEGs (the same ones every time)."""
    files = run.stack.endpoint.rollout.preflight_images
    if files:
        return [Sample(f.name, f.read_bytes()) for f in files]
    from bench.photos import jpeg, photo  # numpy and Pillow; only the pre-flight needs them

    return [Sample(f"generated-{i}.jpg", jpeg(photo(i, 640, 480))) for i in range(GENERATED_IMAGES)]


def fetch(run: Run, uri: str, into: Path) -> Path:
    """Downloads and unpacks the model.tar.gz at `uri` into `into`."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    into.mkdir(parents=True)
    archive = into.parent / f"{into.name}.tar.gz"
    run.client("s3").download_file(bucket, key, str(archive))
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
    return into


def compare_with_serving(
    run: Run,
    client: "docker.DockerClient",
    image: str,
    serving: str,
    into: Path,
    samples: list[Sample],
    new: list[str | None],
) -> None:
    """Prints how often the serving model names the same top class as the new one on `samples`; says
    why not when its archive cannot be read or it does not answer."""
    try:
        old = answers(run, client, image, fetch(run, serving, into), samples)
    except (ClientError, DeployError, OSError, tarfile.TarError) as err:
        run.say(f"pre-flight: no comparison with the serving model {serving}: {err}")
        return
    pairs = [(a, b) for a, b in zip(old, new, strict=True) if a is not None and b is not None]
    if not pairs:
        run.say("pre-flight: no comparison: the answers are not Kennel's top-k predictions")
        return
    agree = sum(a == b for a, b in pairs)
    run.say(
        f"pre-flight: top-1 agreement with the serving model: {agree}/{len(pairs)} images "
        f"({100 * agree / len(pairs):.0f}%)"
    )


def answers(
    run: Run, client: "docker.DockerClient", image: str, model_dir: Path, samples: list[Sample]
) -> list[str | None]:
    """Serves `model_dir` in `image` and returns each sample's top class (None for an answer that is not
    Kennel's top-k JSON, as a custom handler's may be). Raises PreflightError when the model does not
    load or an image is not answered with 200."""
    import docker

    try:
        container = client.containers.run(
            image,
            ["serve"],
            detach=True,
            name=f"{run.stack.name}-preflight-{uuid.uuid4().hex[:8]}",
            volumes={str(model_dir): {"bind": MOUNT, "mode": "ro"}},
            ports={"8080/tcp": ("127.0.0.1", None)},
        )
    except docker.errors.DockerException as err:
        raise PreflightError(f"pre-flight: Docker could not start {image}", str(err)) from None
    try:
        base = ready(run, container, model_dir)
        return [top_class(base, model_dir, sample) for sample in samples]
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)


def ready(run: Run, container: Any, model_dir: Path) -> str:
    """The container's base URL once /ping answers 200; PreflightError when the load fails."""
    within = run.stack.endpoint.startup_health_check_timeout_seconds or 600

    def check() -> str | None:
        container.reload()
        if container.status == "exited":
            logs = container.logs(tail=5).decode(errors="replace").strip()
            raise PreflightError(f"pre-flight: the serving container exited with {model_dir}", logs)
        ports = container.attrs["NetworkSettings"]["Ports"].get("8080/tcp")
        if not ports:
            return None
        base = f"http://127.0.0.1:{ports[0]['HostPort']}"
        status, body = _request(f"{base}/ping")
        if status == 200:
            return base
        if status == 503 and body.get("status") == "failed":
            raise PreflightError(
                f"pre-flight: the model in {model_dir} did not load; nothing was sent to AWS",
                body.get("reason"),
            )
        return None

    return poll.until(
        check,
        what=f"pre-flight: the model in {model_dir} did not answer /ping",
        within=within,
        first=0.2,
        cap=2,
        hint="endpoint.startup_health_check_timeout_seconds bounds the wait, as it does on SageMaker",
    )


def top_class(base: str, model_dir: Path, sample: Sample) -> str | None:
    status, body = _request(
        f"{base}/invocations",
        sample.body,
        {
            "Content-Type": "application/x-image",
            "Accept": "application/json",
            "X-Amzn-SageMaker-Custom-Attributes": "top_k=1",
        },
    )
    if status != 200:
        reason = body.get("message") or body.get("error") or json.dumps(body)[:200]
        raise PreflightError(
            f"pre-flight: the model in {model_dir} answered {sample.name} with HTTP {status}; "
            "nothing was sent to AWS",
            reason,
        )
    try:
        return body["predictions"][0][0]["label"]
    except (KeyError, IndexError, TypeError):
        return None


def _request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, JSON body or {}); (0, {}) while nothing listens yet."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_SECONDS) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"message": raw[:200].decode(errors="replace")}
    return status, body if isinstance(body, dict | list) else {}
