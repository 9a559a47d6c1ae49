"""[lambda]: the proxy function in front of the endpoint (realtime and serverless endpoints), with its
URL fetching and CORS, which kennel_proxy/defaults.py reads from the environment `up` sets."""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.stack.validate import StackError, Table

RUNTIME = re.compile(r"^python3\.\d+$")
# One DNS label; a host name is two or more of them and does not end in a number (that is an address).
LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:\d{1,5})?$")
# Lambda's synchronous payload and SageMaker's real-time request both stop at 6 MB.
MAX_IMAGE_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class Lambda:
    source_dir: Path
    runtime: str
    memory_mb: int
    timeout_seconds: int
    reserved_concurrency: int
    provisioned_concurrency: int
    function_url: bool
    log_retention_days: int
    # The proxy's URL fetching and CORS (kennel_proxy/defaults.py); empty or None: the proxy's default.
    allowed_url_hosts: tuple[str, ...] = ()
    max_image_bytes: int | None = None
    cors_allow_origins: tuple[str, ...] = ()


def parse_lambda(table: Table, base: Path) -> Lambda | None:
    """None without the table (async); `source_dir` resolves against `base`, the stack file's folder."""
    if not table.present:
        return None
    reserved = table.integer("reserved_concurrency", minimum=1)
    provisioned = table.integer("provisioned_concurrency", minimum=0)
    if provisioned > reserved:
        raise StackError("lambda.provisioned_concurrency: may not exceed lambda.reserved_concurrency")
    function = Lambda(
        source_dir=(base / table.string("source_dir")).resolve(),
        runtime=table.string("runtime", pattern=RUNTIME),
        memory_mb=table.integer("memory_mb", minimum=128, maximum=10240),
        # Room for the proxy's URL fetch and its three InvokeEndpoint attempts (deploy/function.py).
        timeout_seconds=table.integer("timeout_seconds", minimum=20, maximum=900),
        reserved_concurrency=reserved,
        provisioned_concurrency=provisioned,
        function_url=table.boolean("function_url"),
        log_retention_days=table.integer("log_retention_days", minimum=1),
        allowed_url_hosts=tuple(
            _host_name(table.key("allowed_url_hosts"), value)
            for value in table.optional_list("allowed_url_hosts", "host names")
        ),
        max_image_bytes=table.optional_integer("max_image_bytes", 1, MAX_IMAGE_BYTES),
        cors_allow_origins=tuple(
            _origin(table.key("cors_allow_origins"), value)
            for value in table.optional_list("cors_allow_origins", "origins")
        ),
    )
    table.reject_unknown()
    return function


def _host_name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise StackError(f"{key}: each entry must be a non-empty string")
    if "*" in value:
        raise StackError(f"{key}: {value!r}: wildcards are refused; list each host name")
    if "/" in value or "@" in value:
        raise StackError(f"{key}: {value!r} is a URL; give only the host name, like images.example.com")
    host, _, port = value.lower().partition(":")
    labels = host.split(".")
    if value.startswith("[") or labels[-1].isdigit():
        raise StackError(f"{key}: {value!r} is an address; give the host name the URLs use")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise StackError(f"{key}: {value!r}: the port must be a number from 1 to 65535")
    if len(labels) < 2 or len(host) > 253 or not all(LABEL.match(label) for label in labels):
        raise StackError(f"{key}: {value!r} is not a host name like images.example.com")
    return value.lower()


def _origin(key: str, value: Any) -> str:
    if value == "*":
        raise StackError(f"{key}: '*' is refused; list each origin, like https://app.example.com")
    if not isinstance(value, str) or not ORIGIN.match(value.lower()):
        raise StackError(
            f"{key}: {value!r} is not an origin (scheme://host[:port], no path), like https://app.example.com"
        )
    return value.lower()
