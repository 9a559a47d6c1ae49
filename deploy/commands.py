"""The commands of `python -m deploy`; each docstring opens with how to run it."""

import argparse
from pathlib import Path

from deploy import invoke, lifecycle, training
from deploy.aws import Run
from deploy.cli import command, print_json


@command("plan")
def plan(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy plan --stack deploy/stack.example.toml

    Lists what `up` would create, update or leave alone, changing nothing (describe calls only)."""
    lifecycle.up(run)
    print(f"plan: {len(run.changed())} change(s), {len(run.changes) - len(run.changed())} unchanged")
    return 0


@command("up")
def up(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy up --stack deploy/stack.example.toml

    Creates or updates every resource: ECR and images, IAM, log groups, the model, the endpoint
    (blue/green when it exists), auto-scaling and the Lambda. A second run changes nothing."""
    lifecycle.up(run)
    print(f"up: {len(run.changed())} change(s)")
    return 0


@command("down")
def down(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy down --stack deploy/stack.example.toml

    Removes what `up` created, in reverse order; safe to repeat. The S3 bucket and its data stay."""
    lifecycle.down(run)
    print(f"down: {len(run.changed())} removed")
    return 0


@command("status")
def status(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy status --stack deploy/stack.example.toml

    The endpoint and its variant counts, the scaling policy, the Lambda's versions and concurrency."""
    print("\n".join(lifecycle.status(run)))
    return 0


def _invoke_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, metavar="IMAGE_FILE", help="a JPEG or PNG file")
    parser.add_argument("--direct", action="store_true", help="call the endpoint, not the Lambda")
    parser.add_argument(
        "--async",
        dest="async_",
        action="store_true",
        help="async endpoints: upload to the input prefix, InvokeEndpointAsync, wait for the result object",
    )


@command("invoke", _invoke_arguments)
def invoke_image(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy invoke --stack deploy/stack.example.toml dog.jpg [--direct]

    Classifies one image through the Lambda's `live` alias (or straight at the endpoint)."""
    if args.async_ or run.stack.endpoint.kind == "async":
        print_json(invoke.via_async(run, args.image))
        return 0
    print_json((invoke.via_endpoint if args.direct else invoke.via_lambda)(run, args.image))
    return 0


def _job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="follow the job and report how it ended")
    parser.add_argument(
        "--metric-definitions",
        type=Path,
        default=training.METRIC_DEFINITIONS,
        metavar="FILE",
        help="MetricDefinitions JSON (default: the one the training image ships)",
    )


@command("train", _job_arguments)
def train(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy train --stack deploy/stack.example.toml [--wait]

    Starts a training job (managed spot with S3 checkpoints) with the image `up` pushed; with --wait,
    follows it and prints its final metrics or its FailureReason. Serve the result with
    `model.training_job = "<job name>"` in the stack file and `up`."""
    name = training.start_training(run, training.metric_definitions(args.metric_definitions))
    print(f"train: started {name}")
    if args.wait:
        described = training.wait_training(run, name)
        for metric in described.get("FinalMetricDataList", []):
            print(f"  {metric['MetricName']} = {metric['Value']:g}")
        print(f"train: {name} completed: {described['ModelArtifacts']['S3ModelArtifacts']}")
    return 0


@command("tune", _job_arguments)
def tune(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy tune --stack deploy/stack.example.toml

    Starts a hyperparameter tuning job: lr continuous on a log scale, batch_size categorical, ranges
    from the stack's [tuning] table, maximising validation:accuracy."""
    name = training.start_tuning(run, training.metric_definitions(args.metric_definitions))
    print(f"tune: started {name}")
    return 0
