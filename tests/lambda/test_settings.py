"""The proxy's settings come from one table, kennel_proxy/defaults.py, which deploy reads too."""

import math
import re
from pathlib import Path

import pytest

from deploy import function
from kennel_proxy import settings as settings_module
from kennel_proxy.defaults import VARIABLES
from kennel_proxy.settings import Settings

from .conftest import ENDPOINT

SETTINGS_SOURCE = Path(settings_module.__file__)
REQUIRED = {"SAGEMAKER_ENDPOINT_NAME": ENDPOINT}


def test_the_table_lists_exactly_the_variables_the_settings_read():
    read = set(re.findall(r'"((?:SAGEMAKER|KENNEL)_[A-Z_]+)"', SETTINGS_SOURCE.read_text()))
    assert read == set(VARIABLES)


@pytest.mark.parametrize("name", [name for name, (default, _) in VARIABLES.items() if default])
def test_an_unset_variable_reads_as_its_default_in_the_table(name):
    default = VARIABLES[name][0]
    assert Settings.from_env(REQUIRED) == Settings.from_env({**REQUIRED, name: default})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KENNEL_MAX_IMAGE_BYTES", "0"),
        ("KENNEL_MAX_ATTEMPTS", "three"),
        ("KENNEL_URL_READ_TIMEOUT_S", "-1"),
        ("KENNEL_RETRY_MODE", "legacy"),
    ],
)
def test_a_bad_value_fails_the_cold_start_naming_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({**REQUIRED, name: value})


def test_deploy_sizes_the_function_from_the_proxys_own_defaults():
    """deploy/function.py reads the same table, so a default changed there moves the timeout budget."""
    settings = Settings.from_env(REQUIRED)
    assert settings.max_attempts == function.INVOKE_ATTEMPTS
    assert math.ceil(settings.invoke_connect_timeout_s) == function.INVOKE_CONNECT_S
    assert math.ceil(settings.url_connect_timeout_s + settings.url_read_timeout_s) == function.URL_FETCH_S
