"""The `python -m deploy` command line: every sub-command is one row of the table COMMANDS.

    python -m deploy --help
    python -m deploy COMMAND --stack FILE [ARGUMENTS]

A new command is a function `fn(args, run) -> exit status` whose docstring opens with how to run it (the
docstring is its --help), and one row below naming it and the function that adds its own arguments.
The command modules import what only one command needs (the Docker SDK, httpx) inside that command,
so `--help`, `status` and `down` never load them.
"""

import argparse
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy import commands, demo, errors, loadtest, report
from deploy.aws import DeployError, Run
from deploy.stack import StackError, load

Handler = Callable[[argparse.Namespace, Run], int]
Arguments = Callable[[argparse.ArgumentParser], None]


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For commands that take nothing but --stack."""


@dataclass(frozen=True)
class Command:
    handler: Handler
    arguments: Arguments = no_arguments


COMMANDS: dict[str, Command] = {
    "plan": Command(commands.plan, commands.preflight_arguments),
    "up": Command(commands.up, commands.preflight_arguments),
    "down": Command(commands.down),
    "status": Command(commands.status),
    "invoke": Command(commands.invoke_image, commands.invoke_arguments),
    "train": Command(commands.train, commands.job_arguments),
    "tune": Command(commands.tune, commands.tune_arguments),
    "data": Command(commands.data_push, commands.data_arguments),
    "follow": Command(commands.follow_job, commands.job_name_argument),
    "stop": Command(commands.stop_job, commands.job_name_argument),
    "trials": Command(commands.show_trials, commands.tuning_job_argument),
    "promote": Command(commands.promote, commands.tuning_job_argument),
    "models": Command(commands.models, commands.models_arguments),
    "transform": Command(commands.batch_transform, commands.transform_arguments),
    "loadtest": Command(loadtest.loadtest, loadtest.arguments),
    "demo": Command(demo.demo, demo.arguments),
    "report": Command(report.report, report.arguments),
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        doc = command.handler.__doc__ or ""
        cmd = sub.add_parser(
            name,
            help=doc.splitlines()[0],
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_argument("--stack", required=True, type=Path, metavar="FILE", help="the stack file (TOML)")
        cmd.add_argument("--debug", action="store_true", help="on an error, print its traceback too")
        command.arguments(cmd)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        run = Run(load(args.stack), dry_run=args.command == "plan")
        return COMMANDS[args.command].handler(args, run)
    except (StackError, DeployError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"deploy {args.command}: {err}", file=sys.stderr)
        return 2 if isinstance(err, StackError) else 1
    except Exception as err:
        # AWS's errors become one line here, once; anything else is a bug and keeps its traceback.
        line = errors.explain(err, args.command)
        if line is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"deploy {args.command}: {line}", file=sys.stderr)
        return 1
