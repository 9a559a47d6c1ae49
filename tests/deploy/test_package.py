"""The Lambda zip: reproducible, exactly the handler's package and the shared reader, and enough to run the
handler on its own."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy import function
from kennel_proxy.settings import Settings

PACKAGE = Path(__file__).resolve().parents[2] / "kennel_proxy"
# What Lambda unpacks: the handler's modules under kennel_proxy/ (not the local adapter, not page/) and the
# strict JSON reader that the serving image runs too.
ZIPPED = [
    "kennel_proxy/__init__.py",
    "kennel_proxy/cors.py",
    "kennel_proxy/defaults.py",
    "kennel_proxy/endpoint.py",
    "kennel_proxy/errors.py",
    "kennel_proxy/events.py",
    "kennel_proxy/local_runtime.py",
    "kennel_proxy/proxy.py",
    "kennel_proxy/safe_fetch.py",
    "kennel_proxy/settings.py",
    "kennel_proxy/validation.py",
    "kennel_common/__init__.py",
    "kennel_common/strict_json.py",
]
# Run as Lambda runs the handler string: no repository on the path, the settings in the environment.
RUN_HANDLER = """
import importlib, json
module, _, name = "{handler}".rpartition(".")
event = {{"version": "2.0", "requestContext": {{"http": {{"method": "GET"}}}}, "headers": {{}}}}
print(json.dumps(getattr(importlib.import_module(module), name)(event, None)))
"""


def test_the_zip_holds_exactly_the_handlers_package_and_runs_it_on_its_own(tmp_path):
    data = function.package(PACKAGE)
    assert data == function.package(PACKAGE)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ZIPPED
        zf.extractall(tmp_path)
    env = {"SAGEMAKER_ENDPOINT_NAME": "kennel-endpoint"}
    env |= {"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-E", "-s", "-c", RUN_HANDLER.format(handler=function.HANDLER)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert (answer["statusCode"], json.loads(answer["body"])["type"]) == (405, "method_not_allowed")


def test_a_folder_without_the_handler_is_refused(tmp_path):
    (tmp_path / "other.py").write_text("")

    with pytest.raises(function.DeployError, match=r"has no proxy\.py \(the handler is kennel_proxy"):
        function.package(tmp_path)


@pytest.mark.parametrize("timeout", [20, 30, 60, 300, 900])  # 20: the stack file's minimum
def test_every_invoke_attempt_fits_in_the_functions_timeout(timeout):
    """With the settings deploy gives the function, a URL fetch plus every InvokeEndpoint attempt at its
    full timeouts still ends before Lambda kills the function (which would answer without our JSON)."""
    env = {"SAGEMAKER_ENDPOINT_NAME": "kennel-endpoint"}
    env |= {
        "KENNEL_MAX_ATTEMPTS": str(function.INVOKE_ATTEMPTS),
        "KENNEL_INVOKE_READ_TIMEOUT_S": str(function.invoke_read_timeout(timeout)),
    }
    settings = Settings.from_env(env)
    worst = settings.url_connect_timeout_s + settings.url_read_timeout_s
    worst += settings.max_attempts * (settings.invoke_connect_timeout_s + settings.invoke_read_timeout_s)
    assert worst < timeout
