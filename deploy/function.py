"""The Lambda proxy: its zip, configuration, a published version behind the `live` alias, reserved
concurrency, provisioned concurrency on the alias and an optional function URL with IAM auth.

Callers use the alias, so provisioned concurrency applies and a new version goes live in one step.
"""

import base64
import contextlib
import hashlib
import io
import math
import zipfile
from pathlib import Path

from deploy import poll
from deploy.aws import DeployError, Run
from deploy.stack import Stack
from kennel_proxy.defaults import VARIABLES

ALIAS = "live"
# The handler's package, as the zip names it whatever the stack's source_dir is called.
PACKAGE = "kennel_proxy"
HANDLER = f"{PACKAGE}.proxy.handler"
# Tests and the local HTTP adapter stay out of the zip (and page/, a subpackage); boto3 comes with the
# Lambda runtime.
EXCLUDED = ("test_*.py", "*_test.py", "conftest.py", "local_adapter.py")
ROOT = Path(__file__).resolve().parents[1]
# Request-data guards that the serving image runs too, from their one copy at the repository root.
SHARED = ("kennel_common/__init__.py", "kennel_common/strict_json.py")


def package(source_dir: Path) -> bytes:
    """The zip of the handler package's top-level .py files, under PACKAGE/, and the SHARED modules, with
    fixed timestamps: same sources, same bytes."""
    files = sorted(p for p in source_dir.glob("*.py") if not any(p.match(pattern) for pattern in EXCLUDED))
    if not any(p.name == "proxy.py" for p in files):
        raise DeployError(f"{source_dir} has no proxy.py (the handler is {HANDLER})")
    entries = [(f"{PACKAGE}/{path.name}", path) for path in files] + [(name, ROOT / name) for name in SHARED]
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return raw.getvalue()


def code_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# The proxy's defaults that the function's timeout must hold: attempts at InvokeEndpoint, their connect
# timeout, and the longest a {"url": ...} body may take to fetch (connect, then the whole read).
INVOKE_ATTEMPTS = int(VARIABLES["KENNEL_MAX_ATTEMPTS"][0])
INVOKE_CONNECT_S = math.ceil(float(VARIABLES["KENNEL_INVOKE_CONNECT_TIMEOUT_S"][0]))
URL_FETCH_S = math.ceil(
    float(VARIABLES["KENNEL_URL_CONNECT_TIMEOUT_S"][0]) + float(VARIABLES["KENNEL_URL_READ_TIMEOUT_S"][0])
)


def invoke_read_timeout(timeout_seconds: int) -> int:
    """The per-attempt read timeout that lets every attempt, and a URL fetch before them, finish inside the
    function's own timeout: a function killed mid-retry answers with no JSON body and no status of ours."""
    budget = timeout_seconds - URL_FETCH_S - 1  # one second to answer
    return max(1, budget // INVOKE_ATTEMPTS - INVOKE_CONNECT_S)


def environment(stack: Stack) -> dict[str, str]:
    """The proxy's settings (the variables in kennel_proxy/defaults.py); a key the stack leaves out is left
    out here too, so the proxy's own default applies."""
    fn = stack.function
    variables = {
        "SAGEMAKER_ENDPOINT_NAME": stack.endpoint_name,
        "KENNEL_MAX_ATTEMPTS": str(INVOKE_ATTEMPTS),
        "KENNEL_INVOKE_READ_TIMEOUT_S": str(invoke_read_timeout(fn.timeout_seconds)),
    }
    if fn.allowed_url_hosts:
        variables["KENNEL_ALLOWED_URL_HOSTS"] = ",".join(fn.allowed_url_hosts)
    if fn.max_image_bytes is not None:
        variables["KENNEL_MAX_IMAGE_BYTES"] = str(fn.max_image_bytes)
    if fn.cors_allow_origins:
        variables["KENNEL_CORS_ALLOW_ORIGINS"] = ",".join(fn.cors_allow_origins)
    return variables


def settings_summary(stack: Stack) -> str:
    """What `plan` shows of the proxy's request settings."""
    fn = stack.function
    hosts = ", ".join(fn.allowed_url_hosts) or "none (URL bodies refused)"
    origins = ", ".join(fn.cors_allow_origins) or "none"
    cap = f"{fn.max_image_bytes} bytes" if fn.max_image_bytes is not None else "default"
    return f"URL hosts: {hosts}; image cap: {cap}; CORS origins: {origins}"


def configuration(run: Run, role_arn: str) -> dict:
    fn = run.stack.function
    return {
        "Runtime": fn.runtime,
        "Role": role_arn,
        "Handler": HANDLER,
        "MemorySize": fn.memory_mb,
        "Timeout": fn.timeout_seconds,
        "Environment": {"Variables": environment(run.stack)},
    }


def _same(live: dict, wanted: dict) -> bool:
    return all(live.get(k) == v for k, v in wanted.items())


def get_configuration(run: Run, qualifier: str | None = None) -> dict | None:
    aws, extra = run.client("lambda"), {"Qualifier": qualifier} if qualifier else {}
    try:
        return aws.get_function_configuration(FunctionName=run.stack.function_name, **extra)
    except aws.exceptions.ResourceNotFoundException:
        return None


def ensure_function(run: Run, role_arn: str) -> None:
    aws, name = run.client("lambda"), run.stack.function_name
    code = package(run.stack.function.source_dir)
    wanted = configuration(run, role_arn)
    latest = get_configuration(run)
    if latest is None:
        detail = f"{len(code)} byte zip; {settings_summary(run.stack)}"
        if run.apply("lambda function", name, "create", detail):
            aws.create_function(
                FunctionName=name, Code={"ZipFile": code}, Tags=run.stack.all_tags(), **wanted
            )
            aws.get_waiter("function_active_v2").wait(FunctionName=name)
    else:
        if latest["CodeSha256"] == code_sha256(code):
            run.apply("lambda code", name, "unchanged")
        elif run.apply("lambda code", name, "update"):
            aws.update_function_code(FunctionName=name, ZipFile=code)
            aws.get_waiter("function_updated_v2").wait(FunctionName=name)
        if _same(latest, wanted):
            run.apply("lambda configuration", name, "unchanged")
        elif run.apply("lambda configuration", name, "update", settings_summary(run.stack)):
            aws.update_function_configuration(FunctionName=name, **wanted)
            aws.get_waiter("function_updated_v2").wait(FunctionName=name)
    _ensure_alias(run, code_sha256(code), wanted)
    _ensure_reserved(run)
    ensure_provisioned(run)
    _ensure_url(run)


def _ensure_alias(run: Run, sha: str, wanted: dict) -> None:
    """Publishes a version and points `live` at it, unless `live` already runs this code and config."""
    aws, name = run.client("lambda"), run.stack.function_name
    live = get_configuration(run, ALIAS)
    if live and live["CodeSha256"] == sha and _same(live, wanted):
        run.apply("lambda alias", f"{name}:{ALIAS}", "unchanged", f"version {live['Version']}")
        return
    if not run.apply(
        "lambda alias", f"{name}:{ALIAS}", "update" if live else "create", "new published version"
    ):
        return
    version = aws.publish_version(FunctionName=name, CodeSha256=sha)["Version"]
    aws.get_waiter("published_version_active").wait(FunctionName=name, Qualifier=version)
    if live:
        aws.update_alias(FunctionName=name, Name=ALIAS, FunctionVersion=version)
    else:
        aws.create_alias(FunctionName=name, Name=ALIAS, FunctionVersion=version)


def _ensure_reserved(run: Run) -> None:
    aws, name, wanted = run.client("lambda"), run.stack.function_name, run.stack.function.reserved_concurrency
    current = None
    if get_configuration(run) is not None:
        current = aws.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
    if current == wanted:
        run.apply("reserved concurrency", name, "unchanged", str(wanted))
    elif run.apply("reserved concurrency", name, "update" if current else "create", f"{current} -> {wanted}"):
        aws.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=wanted)


def ensure_provisioned(run: Run) -> None:
    """Provisioned concurrency on the alias; 0 in the stack file means deploy does not manage it."""
    aws, name, wanted = (
        run.client("lambda"),
        run.stack.function_name,
        run.stack.function.provisioned_concurrency,
    )
    if wanted == 0:
        return
    label = f"{name}:{ALIAS}"
    try:
        current = aws.get_provisioned_concurrency_config(FunctionName=name, Qualifier=ALIAS)
    except (
        aws.exceptions.ProvisionedConcurrencyConfigNotFoundException,
        aws.exceptions.ResourceNotFoundException,
    ):
        current = None
    if current and current["RequestedProvisionedConcurrentExecutions"] == wanted:
        run.apply("provisioned concurrency", label, "unchanged", f"{wanted}, {current['Status']}")
        if current["Status"] != "READY" and not run.dry_run:
            wait_provisioned(run)
    elif run.apply("provisioned concurrency", label, "update" if current else "create", str(wanted)):
        aws.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier=ALIAS, ProvisionedConcurrentExecutions=wanted
        )
        wait_provisioned(run)


def wait_provisioned(run: Run) -> None:
    """Polls until provisioned concurrency is READY; FAILED raises with Lambda's StatusReason."""
    aws, name = run.client("lambda"), run.stack.function_name

    def ready() -> bool | None:
        config = aws.get_provisioned_concurrency_config(FunctionName=name, Qualifier=ALIAS)
        if config["Status"] == "FAILED":
            raise DeployError(f"provisioned concurrency on {name}:{ALIAS} failed", config.get("StatusReason"))
        return config["Status"] == "READY" or None

    poll.until(
        ready,
        what=f"provisioned concurrency on {name}:{ALIAS} was not READY",
        within=30 * 60,
        first=run.poll_seconds,
        cap=max(run.poll_seconds, 60),
    )


def url_cors(stack: Stack) -> dict | None:
    """The function URL's own CORS, for the stack's origins: with IAM auth a browser's preflight cannot
    be signed, so the URL must answer it before auth. Same origins as the proxy's own CORS headers."""
    origins = stack.function.cors_allow_origins
    if not origins:
        return None
    return {
        "AllowOrigins": list(origins),
        "AllowMethods": ["POST"],
        # Content-Type, and the headers of a SigV4-signed request.
        "AllowHeaders": [
            "authorization",
            "content-type",
            "x-amz-content-sha256",
            "x-amz-date",
            "x-amz-security-token",
        ],
        "ExposeHeaders": ["retry-after"],
        "MaxAge": 600,
    }


def _same_cors(current: dict | None, wanted: dict | None) -> bool:
    """Compares what deploy sets, ignoring case and order (the service may echo either differently)."""
    current = current or {}
    if wanted is None:
        return not current.get("AllowOrigins")

    def norm(value: object) -> object:
        return sorted(v.lower() for v in value) if isinstance(value, list) else value

    return all(norm(current.get(k)) == norm(v) for k, v in wanted.items())


def _ensure_url(run: Run) -> None:
    aws, name = run.client("lambda"), run.stack.function_name
    try:
        current = aws.get_function_url_config(FunctionName=name, Qualifier=ALIAS)
    except aws.exceptions.ResourceNotFoundException:
        current = None
    label = f"{name}:{ALIAS}"
    cors = url_cors(run.stack)
    # Updating to no origins leaves an empty list: no origin gets CORS headers.
    settings = {"AuthType": "AWS_IAM", "Cors": cors or {"AllowOrigins": []}}
    detail = "IAM auth" + (f", CORS for {', '.join(cors['AllowOrigins'])}" if cors else "")
    if run.stack.function.function_url:
        if current and current["AuthType"] == "AWS_IAM" and _same_cors(current.get("Cors"), cors):
            run.apply("function url", label, "unchanged", current["FunctionUrl"])
        elif current and run.apply("function url", label, "update", detail):
            aws.update_function_url_config(FunctionName=name, Qualifier=ALIAS, **settings)
        elif not current and run.apply("function url", label, "create", detail):
            extra = {"Cors": cors} if cors else {}
            aws.create_function_url_config(FunctionName=name, Qualifier=ALIAS, AuthType="AWS_IAM", **extra)
    elif current and run.apply("function url", label, "delete"):
        aws.delete_function_url_config(FunctionName=name, Qualifier=ALIAS)


def delete_function(run: Run) -> None:
    """Deleting the function removes its versions, alias, URL and concurrency settings with it."""
    aws, name = run.client("lambda"), run.stack.function_name
    if get_configuration(run) is None or not run.apply("lambda function", name, "delete"):
        return
    with contextlib.suppress(aws.exceptions.ResourceNotFoundException):
        aws.delete_function(FunctionName=name)
