"""The local image builder: Kennel's images from containers/ (and lambda/) with the Docker SDK, tagged
kennel-NAME:TAG (`local_tag`), with what the layer cache saved.

    python -m images build            # train, serve and proxy; BASE_IMAGE from scripts/setup.sh
    python -m images build serve      # one of them
    python -m images build serve-compat   # the serving image's compatibility build, on the training image
    KENNEL_TAG=mine python -m images build serve      # tagged kennel-serve:mine

`make build`, the container tests and `python -m deploy up` (before it pushes to ECR) build through here.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
# The two product images, and the Lambda proxy's local adapter that docker-compose.yml runs beside them.
DOCKERFILES = {
    "train": ROOT / "containers" / "train" / "Dockerfile",
    "serve": ROOT / "containers" / "serve" / "Dockerfile",
    "proxy": ROOT / "lambda" / "Dockerfile",
}
# Each image installs kennel_common/ beside its own folder, so all build from the root (whose .dockerignore
# sends only what they copy).
CONTEXTS = dict.fromkeys(DOCKERFILES, ROOT)
UPSTREAM_BASE = "python:3.11-slim-bookworm"


@dataclass(frozen=True)
class Variant:
    """A second build of one of the DOCKERFILES, on an image built here (its BASE_IMAGE) and with other
    build arguments. Not built by default: name it."""

    of: str
    base: str
    buildargs: dict[str, str]


VARIANTS = {
    # The serving image for handler scripts that need PyTorch: the training image's venv (torch and
    # torchvision from its lock, its layers shared) plus the serving extras and the real inference toolkit.
    "serve-compat": Variant("serve", base="train", buildargs={"REQUIREMENTS": "requirements-compat.txt"}),
}
NAMES = [*DOCKERFILES, *VARIANTS]


class BuildError(RuntimeError):
    """A failed `docker build`; the message ends with the build's last output lines."""


@dataclass(frozen=True)
class BuiltImage:
    name: str
    tag: str
    image_id: str
    steps: int
    cached_steps: int
    seconds: float
    size_bytes: int
    base_image: str
    base_size_bytes: int

    def summary(self) -> str:
        added = (self.size_bytes - self.base_size_bytes) / 1e6
        return (
            f"{self.name}: {self.tag} in {self.seconds:.1f} s, "
            f"{self.cached_steps}/{self.steps} steps from cache, "
            f"{self.size_bytes / 1e6:.0f} MB ({added:+.0f} MB on {self.base_image})"
        )


def local_tag(name: str) -> str:
    """The image's tag on this machine: kennel-NAME:local, or kennel-NAME:$KENNEL_TAG."""
    return f"kennel-{name}:{os.environ.get('KENNEL_TAG', 'local')}"


def base_image() -> str:
    """The base chosen by scripts/setup.sh, or BASE_IMAGE from the environment, or the upstream default."""
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    chosen = ROOT / ".kennel" / "base-image"
    return chosen.read_text().strip() if chosen.is_file() else UPSTREAM_BASE


def build(
    name: str, base: str | None = None, client: docker.DockerClient | None = None, progress=None
) -> BuiltImage:
    """Builds DOCKERFILES[NAME] as kennel-NAME:TAG; `progress` receives each build step's line. A variant
    builds on `base`, or, when none is given, on its base image built first (from the cache, when it is
    current: seconds)."""
    client = client or docker.from_env()
    variant = VARIANTS.get(name)
    if variant is not None and base is None:
        base = build(variant.base, client=client, progress=progress).tag
    base = base or base_image()
    dockerfile = DOCKERFILES[variant.of if variant else name]
    context = CONTEXTS[variant.of if variant else name]
    tag = local_tag(name)
    started = time.monotonic()
    steps = cached = 0
    seen_from = False
    tail: list[str] = []
    image_id = ""
    for chunk in client.api.build(
        path=str(context),
        dockerfile=str(dockerfile.relative_to(context)),
        tag=tag,
        buildargs={"BASE_IMAGE": base, **(variant.buildargs if variant else {})},
        rm=True,
        forcerm=True,
        decode=True,
    ):
        if "error" in chunk:
            raise BuildError(f"building {tag} failed: {chunk['error'].strip()}\n" + "".join(tail[-20:]))
        line = chunk.get("stream", "")
        if line.startswith("Step "):
            # FROM, and an ARG before it, never come "from cache"; count only the steps that can.
            seen_from = seen_from or " : FROM " in line
            steps += seen_from and " : FROM " not in line
            if progress:
                progress(line.strip())
        elif "Using cache" in line:
            cached += 1
        if line.strip():
            tail.append(line)
        image_id = chunk.get("aux", {}).get("ID", image_id)
    image = client.images.get(tag)
    return BuiltImage(
        name=name,
        tag=tag,
        image_id=image_id or image.id,
        steps=steps,
        cached_steps=cached,
        seconds=time.monotonic() - started,
        size_bytes=image.attrs["Size"],
        base_image=base,
        base_size_bytes=client.images.get(base).attrs["Size"],
    )
