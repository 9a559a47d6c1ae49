"""The local image builder: Kennel's images from containers/ (and lambda/) with the Docker SDK, tagged
kennel-NAME:TAG (`local_tag`), with what the layer cache saved.

    python -m images build            # train, serve and proxy; BASE_IMAGE from scripts/setup.sh
    python -m images build serve      # one of them
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
# Serving and the proxy install kennel_common/ beside their own folder, so they build from the root (whose
# .dockerignore sends only what they copy); training needs nothing outside its folder.
CONTEXTS = {"train": DOCKERFILES["train"].parent, "serve": ROOT, "proxy": ROOT}
UPSTREAM_BASE = "python:3.11-slim-bookworm"


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
    """Builds DOCKERFILES[NAME] as kennel-NAME:TAG; `progress` receives each build step's line."""
    client = client or docker.from_env()
    base = base or base_image()
    tag = local_tag(name)
    started = time.monotonic()
    steps = cached = 0
    seen_from = False
    tail: list[str] = []
    image_id = ""
    for chunk in client.api.build(
        path=str(CONTEXTS[name]),
        dockerfile=str(DOCKERFILES[name].relative_to(CONTEXTS[name])),
        tag=tag,
        buildargs={"BASE_IMAGE": base},
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
