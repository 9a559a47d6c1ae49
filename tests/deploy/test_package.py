"""The Lambda zip: reproducible, without tests or the local adapter, and enough to import the handler."""

import importlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("timeout", [20, 30, 60, 300, 900])  # 20: the stack file's minimum
def test_every_invoke_attempt_fits_in_the_functions_timeout(timeout, monkeypatch):
    """With the settings deploy gives the function, a URL fetch plus every InvokeEndpoint attempt at its
    full timeouts still ends before Lambda kills the function (which would answer without our JSON)."""
    env = {"SAGEMAKER_ENDPOINT_NAME": "kennel-endpoint"}
    env |= {
        "KENNEL_MAX_ATTEMPTS": str(function.INVOKE_ATTEMPTS),
        "KENNEL_INVOKE_READ_TIMEOUT_S": str(function.invoke_read_timeout(timeout)),
    }
    # The proxy reads its own settings at import: give it what a deployed function has.
    monkeypatch.setenv("SAGEMAKER_ENDPOINT_NAME", "kennel-endpoint")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings = importlib.import_module("proxy").Settings.from_env(env)
    worst = settings.url_connect_timeout_s + settings.url_read_timeout_s
    worst += settings.max_attempts * (settings.invoke_connect_timeout_s + settings.invoke_read_timeout_s)
    assert worst < timeout
