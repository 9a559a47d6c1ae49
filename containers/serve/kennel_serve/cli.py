"""`serve`: the serving container's entry point.

    docker run -p 8080:8080 -v "$PWD/model:/opt/ml/model:ro" kennel-serve serve   # SageMaker runs the same
    docker run -e SAGEMAKER_BIND_TO_PORT=9000 -p 9000:9000 ... kennel-serve serve  # another port
    SM_MODEL_DIR=./model serve                                                     # on a host, no Docker

Every setting is an environment variable (`serve --help` lists them with their defaults). On SIGTERM the
server stops accepting connections, finishes the requests in flight (up to 25 s, inside SageMaker's 30 s
before SIGKILL), and exits 0.
"""

import argparse
import os
import sys
import tempfile
from typing import TYPE_CHECKING

import uvicorn

from kennel_serve import logs, workers
from kennel_serve.metrics import MULTIPROC_DIR
from kennel_serve.settings import VARIABLES, Settings, SettingsError

if TYPE_CHECKING:
    from fastapi import FastAPI

DRAIN_SECONDS = 25


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="serve",
        description="Serve the model in SM_MODEL_DIR on the SageMaker hosting contract.",
        epilog="environment:\n"
        + "\n".join(
            f"  {name} (default {default or 'unset'}): {meaning}"
            for name, (default, meaning) in VARIABLES.items()
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    logs.configure()
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        sys.exit(f"serve: {err}")
    if settings.workers > 1 and not os.environ.get(MULTIPROC_DIR):
        # Set before the workers start, so that each one's prometheus_client writes to the shared folder.
        os.environ[MULTIPROC_DIR] = tempfile.mkdtemp(prefix="kennel-metrics-")
    options = dict(
        app="kennel_serve.cli:app_factory",
        factory=True,
        host="0.0.0.0",
        port=settings.port,
        workers=settings.workers,
        timeout_graceful_shutdown=DRAIN_SECONDS,
        timeout_keep_alive=75,  # above the idle timeouts of the load balancers in front (60 s)
        access_log=False,  # RequestContext logs each request as one JSON line
        log_config=None,
        loop="uvloop",
        http="httptools",
    )
    if settings.workers > 1 and workers.supported():
        sys.exit(workers.run(uvicorn.Config(**options), settings.workers))
    uvicorn.run(**options)


def app_factory() -> "FastAPI":
    """What each worker process builds; worker processes start fresh, so each sets up its logging. Imported
    here, so that a supervisor of several workers stays small (it never serves a request)."""
    from kennel_serve.app import create_app

    logs.configure()
    return create_app()
