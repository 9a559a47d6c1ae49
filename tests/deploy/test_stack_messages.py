"""The exact text of the stack file's error messages, one bad stack file each: people read these at the
command line, and scripts and guides quote them, so a change to one is a change to the interface."""

import copy

import pytest

from deploy.stack import StackError, load, parse
from tests.deploy.conftest import example_doc
from tests.deploy.test_kinds_stack import async_doc, serverless_doc

DELETE = object()
KINDS = {"realtime": example_doc, "serverless": serverless_doc, "async": async_doc}

# (endpoint kind of the valid stack edited, {dotted key: new value or DELETE}, the whole message)
CASES = [
    ("realtime", {"name": "Kennel"}, "name: 'Kennel' does not match ^[a-z][a-z0-9-]{1,19}$"),
    ("realtime", {"region": DELETE}, "region: missing"),
    ("realtime", {"region": "mars"}, r"region: 'mars' does not match ^[a-z]{2}(-[a-z]+)+-\d$"),
    (
        "realtime",
        {"permissions_boundary": "role boundary"},
        "permissions_boundary: 'role boundary' does not match ^[A-Za-z0-9+=,.@_-]{1,128}$",
    ),
    ("realtime", {"colour": "blue"}, "colour: unknown key"),
    ("realtime", {"tags.owner": 3}, "tags.owner: must be a string"),
    ("realtime", {"images": "v1"}, "images: must be a table"),
    (
        "realtime",
        {"images.tag": "-v1"},
        "images.tag: '-v1' does not match ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
    ),
    ("realtime", {"images.flavour": "slim"}, "images.flavour: unknown key"),
    (
        "realtime",
        {"s3.bucket": "Not_A_Bucket"},
        "s3.bucket: 'Not_A_Bucket' does not match ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    ),
    ("realtime", {"s3.prefix": DELETE}, "s3.prefix: missing"),
    ("realtime", {"s3.region": "us-east-1"}, "s3.region: unknown key"),
    (
        "realtime",
        {"model.training_job": "kennel-train1"},
        "model: set exactly one of model.dir, model.training_job and model.package",
    ),
    (
        "realtime",
        {"model.dir": DELETE},
        "model: set exactly one of model.dir, model.training_job and model.package",
    ),
    ("realtime", {"model.dir": 3}, "model.dir: must be a non-empty string"),
    ("realtime", {"model.path": "x"}, "model.path: unknown key"),
    (
        "realtime",
        {"training.instance_type": "g5.xlarge"},
        r"training.instance_type: 'g5.xlarge' does not match ^ml\.[a-z0-9]+\.[a-z0-9]+$",
    ),
    ("realtime", {"training.instance_count": 0}, "training.instance_count: 0 is outside [1, None]"),
    ("realtime", {"training.spot": "yes"}, "training.spot: must be true or false"),
    (
        "realtime",
        {"training.max_wait_seconds": 60},
        "training.max_wait_seconds: must be at least training.max_runtime_seconds",
    ),
    (
        "realtime",
        {"training.max_runtime_seconds": 30},
        "training.max_runtime_seconds: 30 is outside [60, None]",
    ),
    (
        "realtime",
        {"training.channels": []},
        r"training.channels: must be a non-empty list of names matching ^[A-Za-z0-9\.\-_]+$",
    ),
    (
        "realtime",
        {"training.hyperparameters.lr": [1]},
        "training.hyperparameters.lr: must be a string, number or boolean",
    ),
    ("realtime", {"training.hyperparameters": 5}, "training.hyperparameters: must be a table"),
    ("realtime", {"training.tensorboard": "on"}, "training.tensorboard: must be true or false"),
    ("realtime", {"training.epochs": 3}, "training.epochs: unknown key"),
    ("realtime", {"tuning.learning_rate": [0.1, 0.001]}, "tuning.learning_rate: needs 0 < low < high"),
    ("realtime", {"tuning.learning_rate": [0.1]}, "tuning.learning_rate: must be a list of 2 of floats"),
    ("realtime", {"tuning.batch_sizes": [32, "64"]}, "tuning.batch_sizes: must be a list of ints"),
    ("realtime", {"tuning.batch_sizes": [0]}, "tuning.batch_sizes: must be a list of ints"),
    ("realtime", {"tuning.max_parallel_jobs": DELETE}, "tuning.max_parallel_jobs: missing"),
    ("realtime", {"tuning.strategy": "Bayesian"}, "tuning.strategy: unknown key"),
    ("realtime", {"endpoint": DELETE}, "endpoint: missing"),
    (
        "realtime",
        {"endpoint.kind": "batch"},
        "endpoint.kind: 'batch' is not one of realtime, serverless, async",
    ),
    (
        "realtime",
        {"endpoint.instance_type": "ml.t2.medium"},
        "endpoint.instance_type: auto-scaling does not support burstable ml.t* instances",
    ),
    (
        "realtime",
        {"endpoint.instance_type": "ml.c5.metal"},
        (
            "endpoint.instance_type: 'ml.c5.metal' has no size that names its vCPU count (medium, "
            "large, xlarge, 2xlarge, ...), which the CPU alarm and dashboard need"
        ),
    ),
    (
        "realtime",
        {"endpoint.instance_type": "c5.xlarge"},
        r"endpoint.instance_type: 'c5.xlarge' does not match ^ml\.[a-z0-9]+\.[a-z0-9]+$",
    ),
    (
        "realtime",
        {"endpoint.variant": "All Traffic"},
        "endpoint.variant: 'All Traffic' does not match ^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$",
    ),
    (
        "realtime",
        {"endpoint.startup_health_check_timeout_seconds": 30},
        "endpoint.startup_health_check_timeout_seconds: 30 is outside [60, 3600]",
    ),
    (
        "realtime",
        {"endpoint.model_download_timeout_seconds": 3601},
        "endpoint.model_download_timeout_seconds: 3601 is outside [60, 3600]",
    ),
    ("realtime", {"endpoint.log_retention_days": True}, "endpoint.log_retention_days: must be an integer"),
    ("realtime", {"endpoint.network_isolation": "no"}, "endpoint.network_isolation: must be true or false"),
    ("realtime", {"endpoint.instance_cuont": 2}, "endpoint.instance_cuont: unknown key"),
    ("realtime", {"endpoint.data_capture": "on"}, "endpoint.data_capture: must be a table"),
    (
        "realtime",
        {"endpoint.data_capture.sampling_percentage": 101},
        "endpoint.data_capture.sampling_percentage: 101 is outside [1, 100]",
    ),
    (
        "realtime",
        {"endpoint.data_capture.sampling_percentage": 10, "endpoint.data_capture.prefix": "Captured"},
        "endpoint.data_capture.prefix: 'Captured' does not match ^[a-z0-9][a-z0-9/_-]*[a-z0-9]$",
    ),
    (
        "realtime",
        {"endpoint.data_capture.sampling_percentage": 10, "endpoint.data_capture.compress": True},
        "endpoint.data_capture.compress: unknown key",
    ),
    (
        "realtime",
        {"endpoint.serverless.memory_size_mb": 2048},
        (
            "endpoint.serverless: does not apply to a realtime endpoint: it sizes a serverless "
            "endpoint; remove it"
        ),
    ),
    ("realtime", {"autoscaling": DELETE}, "autoscaling: missing"),
    (
        "realtime",
        {"autoscaling.min_instances": 3},
        "autoscaling.min_instances: needs min_instances <= endpoint.instance_count <= max_instances",
    ),
    ("realtime", {"autoscaling.min_instances": 0}, "autoscaling.min_instances: 0 is outside [1, None]"),
    ("realtime", {"autoscaling.max_instances": 0}, "autoscaling.max_instances: 0 is outside [1, None]"),
    (
        "realtime",
        {"autoscaling.target_invocations_per_instance": 0},
        "autoscaling.target_invocations_per_instance: must be a positive number",
    ),
    (
        "realtime",
        {"autoscaling.scale_in_cooldown_seconds": -1},
        "autoscaling.scale_in_cooldown_seconds: -1 is outside [0, None]",
    ),
    (
        "realtime",
        {"autoscaling.target_backlog_per_instance": 5},
        (
            "autoscaling.target_backlog_per_instance: does not apply to a realtime endpoint: only async "
            "endpoints scale on their queue (ApproximateBacklogSizePerInstance); remove it"
        ),
    ),
    ("realtime", {"autoscaling.cooldown": 5}, "autoscaling.cooldown: unknown key"),
    ("realtime", {"lambda": DELETE}, "lambda: missing"),
    (
        "realtime",
        {"lambda.provisioned_concurrency": 50},
        "lambda.provisioned_concurrency: may not exceed lambda.reserved_concurrency",
    ),
    ("realtime", {"lambda.reserved_concurrency": 0}, "lambda.reserved_concurrency: 0 is outside [1, None]"),
    ("realtime", {"lambda.memory_mb": 64}, "lambda.memory_mb: 64 is outside [128, 10240]"),
    ("realtime", {"lambda.timeout_seconds": 10}, "lambda.timeout_seconds: 10 is outside [20, 900]"),
    (
        "realtime",
        {"lambda.runtime": "nodejs20.x"},
        r"lambda.runtime: 'nodejs20.x' does not match ^python3\.\d+$",
    ),
    ("realtime", {"lambda.source_dir": ""}, "lambda.source_dir: must be a non-empty string"),
    ("realtime", {"lambda.function_url": 1}, "lambda.function_url: must be true or false"),
    ("realtime", {"lambda.memroy_mb": 512}, "lambda.memroy_mb: unknown key"),
    (
        "realtime",
        {"lambda.allowed_url_hosts": "s3.amazonaws.com"},
        "lambda.allowed_url_hosts: must be a list of host names",
    ),
    (
        "realtime",
        {"lambda.allowed_url_hosts": ["93.184.215.14"]},
        "lambda.allowed_url_hosts: '93.184.215.14' is an address; give the host name the URLs use",
    ),
    (
        "realtime",
        {"lambda.allowed_url_hosts": ["https://images.example.com/a.jpg"]},
        (
            "lambda.allowed_url_hosts: 'https://images.example.com/a.jpg' is a URL; give only the host "
            "name, like images.example.com"
        ),
    ),
    (
        "realtime",
        {"lambda.allowed_url_hosts": ["*.example.com"]},
        "lambda.allowed_url_hosts: '*.example.com': wildcards are refused; list each host name",
    ),
    (
        "realtime",
        {"lambda.allowed_url_hosts": ["example.com:0"]},
        "lambda.allowed_url_hosts: 'example.com:0': the port must be a number from 1 to 65535",
    ),
    (
        "realtime",
        {"lambda.allowed_url_hosts": ["localhost"]},
        "lambda.allowed_url_hosts: 'localhost' is not a host name like images.example.com",
    ),
    (
        "realtime",
        {"lambda.allowed_url_hosts": [3]},
        "lambda.allowed_url_hosts: each entry must be a non-empty string",
    ),
    (
        "realtime",
        {"lambda.cors_allow_origins": ["*"]},
        "lambda.cors_allow_origins: '*' is refused; list each origin, like https://app.example.com",
    ),
    (
        "realtime",
        {"lambda.cors_allow_origins": ["app.example.com"]},
        (
            "lambda.cors_allow_origins: 'app.example.com' is not an origin (scheme://host[:port], no "
            "path), like https://app.example.com"
        ),
    ),
    (
        "realtime",
        {"lambda.cors_allow_origins": "https://app.example.com"},
        "lambda.cors_allow_origins: must be a list of origins",
    ),
    (
        "realtime",
        {"lambda.max_image_bytes": 7000000},
        "lambda.max_image_bytes: 7000000 is outside [1, 6291456]",
    ),
    ("realtime", {"alarms": "on"}, "alarms: must be a table"),
    ("realtime", {"alarms.cpu_percent": 150}, "alarms.cpu_percent: 150 is a percentage, at most 100"),
    ("realtime", {"alarms.latency_p99_ms": -1}, "alarms.latency_p99_ms: must be a positive number"),
    ("realtime", {"alarms.evaluation_minutes": 0}, "alarms.evaluation_minutes: 0 is outside [1, 60]"),
    (
        "realtime",
        {"alarms.at_max_instances_minutes": 1441},
        "alarms.at_max_instances_minutes: 1441 is outside [1, 1440]",
    ),
    ("realtime", {"alarms.lambda_errors": 0.5}, "alarms.lambda_errors: must be an integer"),
    (
        "realtime",
        {"alarms.email": "oncall"},
        r"alarms.email: 'oncall' does not match ^[^@\s]+@[^@\s]+\.[^@\s]+$",
    ),
    ("realtime", {"alarms.endpoint_5xx_rate": 1}, "alarms.endpoint_5xx_rate: unknown key"),
    ("realtime", {"transform": 1}, "transform: must be a table"),
    (
        "realtime",
        {"transform.content_type": "image/gif"},
        ("transform.content_type: 'image/gif' is not one of application/x-image, application/jsonlines"),
    ),
    ("realtime", {"transform.content_type": DELETE}, "transform.content_type: missing"),
    (
        "realtime",
        {"transform.max_payload_mb": 50},
        ("transform.max_concurrent_transforms: times transform.max_payload_mb may not exceed 100 (MB)"),
    ),
    (
        "realtime",
        {"transform.max_concurrent_transforms": 101},
        "transform.max_concurrent_transforms: 101 is outside [1, 100]",
    ),
    (
        "realtime",
        {"transform.instance_type": "ml.c5"},
        r"transform.instance_type: 'ml.c5' does not match ^ml\.[a-z0-9]+\.[a-z0-9]+$",
    ),
    ("realtime", {"transform.instance_cuont": 1}, "transform.instance_cuont: unknown key"),
    (
        "serverless",
        {"endpoint.instance_type": "ml.c5.xlarge"},
        (
            "endpoint.instance_type: does not apply to a serverless endpoint: a serverless endpoint has "
            "no instances; SageMaker sizes it by memory; remove it"
        ),
    ),
    (
        "serverless",
        {"endpoint.instance_count": 1},
        (
            "endpoint.instance_count: does not apply to a serverless endpoint: a serverless endpoint "
            "has no instances; it scales by concurrency; remove it"
        ),
    ),
    (
        "serverless",
        {"endpoint.startup_health_check_timeout_seconds": 600},
        (
            "endpoint.startup_health_check_timeout_seconds: does not apply to a serverless endpoint: "
            "SageMaker manages a serverless endpoint's start-up; remove it"
        ),
    ),
    (
        "serverless",
        {"endpoint.network_isolation": True},
        (
            "endpoint.network_isolation: does not apply to a serverless endpoint: SageMaker does not "
            "isolate serverless endpoints from the network; remove it"
        ),
    ),
    (
        "serverless",
        {"endpoint.data_capture.sampling_percentage": 10},
        (
            "endpoint.data_capture: does not apply to a serverless endpoint: SageMaker does not capture "
            "data on serverless endpoints; remove it"
        ),
    ),
    (
        "serverless",
        {"autoscaling.min_instances": 1},
        (
            "autoscaling: does not apply to a serverless endpoint: a serverless endpoint scales itself "
            "up to endpoint.serverless.max_concurrency; remove it"
        ),
    ),
    (
        "serverless",
        {"alarms.cpu_percent": 80},
        (
            "alarms.cpu_percent: does not apply to a serverless endpoint: a serverless endpoint has no "
            "instances whose CPU could be watched; remove it"
        ),
    ),
    (
        "serverless",
        {"alarms.at_max_instances_minutes": 30},
        (
            "alarms.at_max_instances_minutes: does not apply to a serverless endpoint: a serverless "
            "endpoint has no instance count; remove it"
        ),
    ),
    (
        "serverless",
        {"endpoint.async.input_prefix": "async/input"},
        (
            "endpoint.async: does not apply to a serverless endpoint: it configures an async endpoint's "
            "queue, S3 prefixes and topics; remove it"
        ),
    ),
    ("serverless", {"endpoint.serverless": DELETE}, "endpoint.serverless: missing"),
    (
        "serverless",
        {"endpoint.serverless.memory_size_mb": 1536},
        (
            "endpoint.serverless.memory_size_mb: 1536 is not one of SageMaker's sizes 1024, 2048, 3072, "
            "4096, 5120, 6144"
        ),
    ),
    (
        "serverless",
        {"endpoint.serverless.memory_size_mb": 8192},
        "endpoint.serverless.memory_size_mb: 8192 is outside [1024, 6144]",
    ),
    (
        "serverless",
        {"endpoint.serverless.max_concurrency": 201},
        "endpoint.serverless.max_concurrency: 201 is outside [1, 200]",
    ),
    (
        "serverless",
        {"endpoint.serverless.provisioned_concurrency": 21},
        "endpoint.serverless.provisioned_concurrency: may not exceed max_concurrency",
    ),
    ("serverless", {"endpoint.serverless.memory": 2048}, "endpoint.serverless.memory: unknown key"),
    (
        "async",
        {"lambda": example_doc()["lambda"]},
        (
            "lambda: does not apply to an async endpoint: the proxy calls InvokeEndpoint, which an "
            "async endpoint refuses; send requests with `python -m deploy invoke --async` or "
            "InvokeEndpointAsync; remove it"
        ),
    ),
    (
        "async",
        {"alarms.lambda_errors": 1},
        (
            "alarms.lambda_errors: does not apply to an async endpoint: an async stack has no Lambda "
            "proxy to watch; remove it"
        ),
    ),
    (
        "async",
        {"alarms.lambda_spillover": 1},
        (
            "alarms.lambda_spillover: does not apply to an async endpoint: an async stack has no Lambda "
            "proxy to watch; remove it"
        ),
    ),
    (
        "async",
        {"autoscaling.target_invocations_per_instance": 600},
        (
            "autoscaling.target_invocations_per_instance: does not apply to an async endpoint: only "
            "realtime endpoints scale on InvocationsPerInstance; async ones scale on "
            "autoscaling.target_backlog_per_instance; remove it"
        ),
    ),
    (
        "async",
        {"autoscaling.target_backlog_per_instance": DELETE},
        "autoscaling.target_backlog_per_instance: missing",
    ),
    (
        "async",
        {"autoscaling.target_backlog_per_instance": 0},
        "autoscaling.target_backlog_per_instance: must be a positive number",
    ),
    ("async", {"endpoint.instance_count": 0}, "endpoint.instance_count: 0 is outside [1, None]"),
    ("async", {"endpoint.async": DELETE}, "endpoint.async: missing"),
    (
        "async",
        {"endpoint.async.input_prefix": "data/incoming"},
        (
            "endpoint.async.input_prefix: 'data/incoming' is inside kennel/data/, which Kennel keeps "
            "for other things (data, training, checkpoints, models); pick another prefix"
        ),
    ),
    (
        "async",
        {"endpoint.async.failure_prefix": "models/failures"},
        (
            "endpoint.async.failure_prefix: 'models/failures' is inside kennel/models/, which Kennel "
            "keeps for other things (data, training, checkpoints, models); pick another prefix"
        ),
    ),
    (
        "async",
        {"endpoint.async.output_prefix": "async/input/results"},
        (
            "endpoint.async: 'async/input' and 'async/input/results' overlap; input, output and failure "
            "prefixes must be separate so that each can be granted on its own"
        ),
    ),
    (
        "async",
        {"endpoint.async.output_prefix": "async/input"},
        (
            "endpoint.async: 'async/input' and 'async/input' overlap; input, output and failure "
            "prefixes must be separate so that each can be granted on its own"
        ),
    ),
    (
        "async",
        {"endpoint.async.input_prefix": "Async/Input"},
        "endpoint.async.input_prefix: 'Async/Input' does not match ^[a-z0-9][a-z0-9/_-]*[a-z0-9]$",
    ),
    ("async", {"endpoint.async.success_topic": "yes"}, "endpoint.async.success_topic: must be true or false"),
    (
        "async",
        {"endpoint.async.max_payload_mb": 2048},
        "endpoint.async.max_payload_mb: 2048 is outside [1, 1024]",
    ),
    (
        "async",
        {"endpoint.async.max_concurrent_invocations_per_instance": 0},
        "endpoint.async.max_concurrent_invocations_per_instance: 0 is outside [1, 1000]",
    ),
    ("async", {"endpoint.async.queue": "q"}, "endpoint.async.queue: unknown key"),
    (
        "async",
        {"s3.prefix": "team/kennel", "endpoint.async.output_prefix": "training/out"},
        (
            "endpoint.async.output_prefix: 'training/out' is inside team/kennel/training/, which Kennel "
            "keeps for other things (data, training, checkpoints, models); pick another prefix"
        ),
    ),
]


def edited(kind: str, edits: dict) -> dict:
    doc = KINDS[kind]()
    for dotted, value in edits.items():
        *tables, key = dotted.split(".")
        target = doc
        for table in tables:
            target = target.setdefault(table, {})
        if value is DELETE:
            del target[key]
        else:
            target[key] = copy.deepcopy(value)
    return doc


@pytest.mark.parametrize(
    ("kind", "edits", "message"), CASES, ids=[f"{c[0]}-{'+'.join(c[1])}-{i}" for i, c in enumerate(CASES)]
)
def test_the_message_is_exactly(tmp_path, kind, edits, message):
    with pytest.raises(StackError) as err:
        parse(edited(kind, edits), tmp_path)
    assert str(err.value) == message


def test_each_kind_of_valid_stack_parses(tmp_path):
    assert [parse(KINDS[kind](), tmp_path).endpoint.kind for kind in KINDS] == list(KINDS)


def test_a_missing_file_and_broken_toml_are_named(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(StackError) as err:
        load(missing)
    assert str(err.value) == f"stack file {missing} does not exist"
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(StackError) as err:
        load(broken)
    assert str(err.value) == f"stack file {broken} is not valid TOML: Invalid value (at line 1, column 8)"
