"""The Lambda zip: reproducible, without tests or the local adapter, and enough to import the handler."""

import io
import subprocess
import sys
import zipfile
from pathlib import Path

from deploy import function

LAMBDA = Path(__file__).resolve().parents[2] / "lambda"


def test_the_zip_of_lambda_imports_its_handler_on_its_own(tmp_path):
    data = function.package(LAMBDA)
    assert data == function.package(LAMBDA)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path)
    assert "proxy.py" in names and "local_adapter.py" not in names
    assert not any(name.startswith("test_") for name in names)
    env = {"SAGEMAKER_ENDPOINT_NAME": "kennel-endpoint"}
    env |= {"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-E", "-s", "-c", "import proxy; assert callable(proxy.handler)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
