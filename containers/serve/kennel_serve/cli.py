"""`serve`: the serving container's entry point.

    docker run -p 8080:8080 -v "$PWD/model:/opt/ml/model:ro" kennel-serve serve   # SageMaker runs the same
    SAGEMAKER_BIND_TO_PORT=9000 serve                                               # another port
"""

import os

import uvicorn

from kennel_serve.app import create_app


def main() -> None:
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    uvicorn.run(create_app(), host="0.0.0.0", port=port, log_level="info")
