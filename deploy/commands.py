"""The commands of `python -m deploy` (deploy/cli.py lists them); each docstring opens with how to run it."""

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from deploy import data, follow, invoke, lifecycle, registry, training, transform, trials
from deploy.aws import Run


def preflight_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-preflight",
        action="store_true",
        help="skip running a new model in the local serving image before it goes to AWS",
    )


def plan(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy plan --stack deploy/stack.example.toml [--no-preflight]

    Lists what `up` would create, update or leave alone, changing nothing (describe calls only), and
    whether `up` runs the new model in the local serving image first."""
    lifecycle.up(run, with_preflight=not args.no_preflight)
    print(f"plan: {len(run.changed())} change(s), {len(run.changes) - len(run.changed())} unchanged")
    return 0


def up(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy up --stack deploy/stack.example.toml [--no-preflight]

    Runs a new model in the local serving image first, when Docker answers (the pre-flight: it must
    load and classify sample images; --no-preflight skips it). Then creates or updates every resource:
    ECR and images, IAM, log groups, the model, the endpoint (blue/green when it exists, in the steps of
    [endpoint.rollout], rolled back by its alarms), auto-scaling and the Lambda. A second run changes
    nothing."""
    lifecycle.up(run, with_preflight=not args.no_preflight)
    print(f"up: {len(run.changed())} change(s)")
    return 0


def down(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy down --stack deploy/stack.example.toml

    Removes what `up` created (and the training repository `train` and `tune` made), in reverse order;
    safe to repeat. The S3 bucket and its data stay."""
    lifecycle.down(run)
    print(f"down: {len(run.changed())} removed")
    return 0


def status(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy status --stack deploy/stack.example.toml

    The endpoint and its variant counts, the scaling policy, the Lambda's versions and concurrency."""
    print("\n".join(lifecycle.status(run)))
    return 0


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2) if not isinstance(value, str) else value)


def invoke_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, metavar="IMAGE_FILE", help="a JPEG or PNG file")
    parser.add_argument("--direct", action="store_true", help="call the endpoint, not the Lambda")
    parser.add_argument(
        "--async",
        dest="async_",
        action="store_true",
        help="async endpoints: upload to the input prefix, InvokeEndpointAsync, wait for the result object",
    )


def invoke_image(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy invoke --stack deploy/stack.example.toml docs/sample.jpg [--direct]

    Classifies one image through the Lambda's `live` alias (or straight at the endpoint)."""
    if args.async_ or run.stack.endpoint.kind == "async":
        print_json(invoke.via_async(run, args.image))
        return 0
    print_json((invoke.via_endpoint if args.direct else invoke.via_lambda)(run, args.image))
    return 0


def job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="follow the job and report how it ended")
    parser.add_argument(
        "--metric-definitions",
        type=Path,
        default=training.METRIC_DEFINITIONS,
        metavar="FILE",
        help="MetricDefinitions JSON (default: the one the training image ships)",
    )


INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C


def _following(args: argparse.Namespace, name: str, fn: Callable[[], dict]) -> dict | None:
    """`fn()` follows job `name` and returns its description; Ctrl-C stops following (not the job),
    prints how to follow it again or stop it, and returns None."""
    try:
        return fn()
    except KeyboardInterrupt:
        print("\n" + follow.hint(str(args.stack), name), file=sys.stderr)
        return None


def train(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy train --stack deploy/stack.example.toml [--wait]

    Makes sure the training image is in ECR (building and pushing it if its tag is not), then starts a
    training job (managed spot with S3 checkpoints) on s3://BUCKET/PREFIX/data/CHANNEL/. With --wait,
    follows it: status changes, spot interruptions and resumes, the job's log lines as they arrive, and
    its final metrics or FailureReason. Serve the result with `model.training_job = "<job name>"` in the
    stack file and `up`; with a [registry] table, --wait also registers it as a version to approve."""
    definitions = training.metric_definitions(args.metric_definitions)
    training.ensure_training_image(run)
    name = training.start_training(run, definitions)
    print(f"train: started {name}")
    if args.wait:
        described = _following(args, name, lambda: follow.follow_training(run, name))
        if described is None:
            return INTERRUPTED
        print(f"train: {name} completed: {described['ModelArtifacts']['S3ModelArtifacts']}")
        if run.stack.registry:
            _registered(args, run, "train", registry.register_training_job(run, name))
    return 0


def _registered(args: argparse.Namespace, run: Run, command: str, version: registry.Version) -> None:
    print(
        f"{command}: registered {version.describe()} in {registry.group(run)}; check it with"
        f" `python -m deploy models --stack {args.stack} list`, then"
        f" `python -m deploy models --stack {args.stack} approve {version.number}`"
    )


def tune_arguments(parser: argparse.ArgumentParser) -> None:
    job_arguments(parser)
    parser.add_argument(
        "--promote",
        action="store_true",
        help="with --wait (implied): write the best completed trial into the stack file's [model]",
    )


def tune(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy tune --stack deploy/stack.example.toml [--wait] [--promote]

    Makes sure the training image is in ECR, then starts a hyperparameter tuning job: lr continuous on a
    log scale, batch_size categorical, ranges from the stack's [tuning] table, maximising
    validation:accuracy. With --wait, follows it (trial counts, the best so far, every trial's log lines)
    and ends with the trials table, best first; --promote then writes the best completed trial into the
    stack file's [model] table, so that the next `up` serves it."""
    definitions = training.metric_definitions(args.metric_definitions)
    training.ensure_training_image(run)
    name = training.start_tuning(run, definitions)
    print(f"tune: started {name}")
    if args.wait or args.promote:
        if _following(args, name, lambda: follow.follow_tuning(run, name)) is None:
            return INTERRUPTED
        found = trials.list_trials(run, name)
        print("\n".join(found.table()))
        if args.promote:
            _promote(args, run, found)
    return 0


def _promote(args: argparse.Namespace, run: Run, found: trials.Trials) -> None:
    """The best trial into [model]; with a [registry], also a version of it. A stack that serves from the
    registry (`model.package`) keeps its [model]: approving the version is what deploys it."""
    best = found.best()
    if run.stack.registry:
        _registered(args, run, "promote", registry.register_training_job(run, best.name))
    if run.stack.model.package is not None:
        return
    trials.promote(args.stack, best.name)
    print(
        f"promote: {args.stack} [model] now serves {best.name} ({found.metric} = {best.objective:g});"
        f" run `python -m deploy up --stack {args.stack}` to deploy it"
    )


def data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["push"], help="push: check, then upload what is not there yet")
    parser.add_argument("dir", type=Path, metavar="DIR", help="the folder with train/ valid/ test/")
    parser.add_argument(
        "--channel", help="the training channel to fill (default: the first of training.channels)"
    )


def data_push(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy data push --stack deploy/stack.example.toml ~/dogImages

    Checks an ImageFolder data set (train/ valid/ test/, the same classes in each, every file a readable
    image) and uploads it to s3://BUCKET/PREFIX/data/CHANNEL/, where training jobs read it: parallel and
    multipart, with a progress bar, skipping files already there with the same content. A bad layout is
    reported file by file and nothing is uploaded."""
    report = data.push(run, args.dir, args.channel)
    print("\n".join(report.lines()))
    return 0


def job_name_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB", help="a training, tuning or transform job name")


def follow_job(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy follow --stack deploy/stack.example.toml JOB

    Follows a running (or finished) training, tuning or transform job to its end: status changes and its
    log lines from the start. Ctrl-C stops following; the job runs on."""
    return INTERRUPTED if _following(args, args.job, lambda: follow.follow(run, args.job)) is None else 0


def stop_job(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy stop --stack deploy/stack.example.toml JOB

    Stops a training, tuning or transform job. A training job gets SIGTERM and saves a checkpoint first;
    a tuning job stops all its running trials."""
    kind = follow.stop(run, args.job)
    print(
        f"stop: asked SageMaker to stop {kind} job {args.job}; "
        f"`python -m deploy follow --stack {args.stack} {args.job}` shows it end"
    )
    return 0


def tuning_job_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tuning_job", metavar="TUNING_JOB", help="the tuning job's name")


def show_trials(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy trials --stack deploy/stack.example.toml TUNING_JOB

    The tuning job's trials, best first: hyperparameters, objective, status and duration."""
    print("\n".join(trials.list_trials(run, args.tuning_job).table()))
    return 0


def promote(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy promote --stack deploy/stack.example.toml TUNING_JOB

    Writes the tuning job's best completed trial into the stack file's [model] table (training_job set,
    dir commented out; comments and layout kept). The next `up` serves it. With a [registry] table it is
    also registered as a version to approve; a stack with `model.package` is left as it is."""
    _promote(args, run, trials.list_trials(run, args.tuning_job))
    return 0


def transform_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", metavar="INPUT_PREFIX", help="s3:// URI or name under PREFIX/transform/input/"
    )
    parser.add_argument(
        "output", metavar="OUTPUT_PREFIX", help="s3:// URI or name under PREFIX/transform/output/"
    )


def batch_transform(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy transform --stack deploy/stack.example.toml photos/ run1/

    Runs a batch transform job with the serving image and the model the endpoint serves, over the
    images (or JSON Lines) under INPUT_PREFIX, as the stack's [transform] table says; follows it and
    summarises the output: records, inputs without a result, and where the results are. Exits 1 when
    an input has no result."""
    source, target = (
        transform.resolve(run, args.input, "input"),
        transform.resolve(run, args.output, "output"),
    )
    name = transform.start(run, source, target)
    print(f"transform: started {name} ({source} -> {target})")
    if _following(args, name, lambda: follow.follow_transform(run, name)) is None:
        return INTERRUPTED
    summary = transform.summarise(run, name, source, target)
    print("\n".join(summary.lines()))
    return 1 if summary.missing else 0


def models_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every version, newest first")
    register = actions.add_parser("register", help="upload a model directory and register it")
    register.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="a model directory")
    for action, what in (("approve", "may be served"), ("reject", "may not be served")):
        decide = actions.add_parser(action, help=f"the version {what}")
        decide.add_argument("version", type=int, metavar="VERSION", help="the version number")
        decide.add_argument("--reason", help="why, kept with the version (ApprovalDescription)")


def models(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy models --stack deploy/stack.example.toml {list,register,approve,reject} ...

    `list`; `register MODEL_DIR`; `approve VERSION`; `reject VERSION [--reason TEXT]`.

    The stack's model registry (SageMaker Model Registry, group NAME-models; needs [registry]): `list`
    shows every version, newest first, with its approval, metrics and origin; `register` uploads a model
    directory as `up` would and registers it; a new version is PendingManualApproval until `approve` or
    `reject`. With `model.package = "latest-approved"` (or a version number) `up` serves approved
    versions only."""
    if args.action == "list":
        print("\n".join(registry.table(registry.versions(run))))
    elif args.action == "register":
        _registered(args, run, "models register", registry.register_model_dir(run, args.model_dir))
    else:
        decide = registry.approve if args.action == "approve" else registry.reject
        version = decide(run, args.version, args.reason)
        reason = f": {version.reason}" if version.reason else ""
        print(f"models {args.action}: {registry.group(run)} {version.describe()}{reason}")
    return 0
