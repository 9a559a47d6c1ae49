"""`[endpoint] kind` picks one of three endpoint kinds; each kind's keys, in any section, are refused on
the other kinds with the reason, before any section is read."""

from typing import Any

from deploy.stack.validate import StackError, Table

KINDS = ("realtime", "serverless", "async")

# (kind the key belongs to, dotted key, why it does not apply elsewhere)
_KIND_ONLY = (
    ("serverless", "endpoint.serverless", "it sizes a serverless endpoint"),
    ("async", "endpoint.async", "it configures an async endpoint's queue, S3 prefixes and topics"),
    (
        "async",
        "autoscaling.target_backlog_per_instance",
        "only async endpoints scale on their queue (ApproximateBacklogSizePerInstance)",
    ),
    (
        "realtime",
        "autoscaling.target_invocations_per_instance",
        "only realtime endpoints scale on InvocationsPerInstance; async ones scale on "
        "autoscaling.target_backlog_per_instance",
    ),
)
_NOT_ON = {
    "serverless": (
        ("endpoint.instance_type", "a serverless endpoint has no instances; SageMaker sizes it by memory"),
        ("endpoint.instance_count", "a serverless endpoint has no instances; it scales by concurrency"),
        (
            "autoscaling",
            "a serverless endpoint scales itself up to endpoint.serverless.max_concurrency",
        ),
        (
            "endpoint.startup_health_check_timeout_seconds",
            "SageMaker manages a serverless endpoint's start-up",
        ),
        ("endpoint.model_download_timeout_seconds", "SageMaker manages a serverless endpoint's start-up"),
        ("endpoint.data_capture", "SageMaker does not capture data on serverless endpoints"),
        ("endpoint.network_isolation", "SageMaker does not isolate serverless endpoints from the network"),
        ("alarms.cpu_percent", "a serverless endpoint has no instances whose CPU could be watched"),
        ("alarms.at_max_instances_minutes", "a serverless endpoint has no instance count"),
    ),
    "async": (
        (
            "lambda",
            "the proxy calls InvokeEndpoint, which an async endpoint refuses; send requests with "
            "`python -m deploy invoke --async` or InvokeEndpointAsync",
        ),
        *(
            (f"alarms.{key}", "an async stack has no Lambda proxy to watch")
            for key in ("lambda_errors", "lambda_throttles", "lambda_duration_percent", "lambda_spillover")
        ),
    ),
}


def _lookup(doc: dict[str, Any], dotted: str) -> bool:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def endpoint_kind(endpoint: Table, doc: dict[str, Any]) -> str:
    """`endpoint.kind`, after refusing every key of `doc` that does not apply to it."""
    kind = endpoint.string("kind", required=False) or "realtime"
    if kind not in KINDS:
        raise StackError(f"endpoint.kind: {kind!r} is not one of {', '.join(KINDS)}")
    article = "an" if kind == "async" else "a"
    for owner, dotted, why in _KIND_ONLY:
        if owner != kind and _lookup(doc, dotted):
            raise StackError(f"{dotted}: does not apply to {article} {kind} endpoint: {why}; remove it")
    for dotted, why in _NOT_ON.get(kind, ()):
        if _lookup(doc, dotted):
            raise StackError(f"{dotted}: does not apply to {article} {kind} endpoint: {why}; remove it")
    return kind
