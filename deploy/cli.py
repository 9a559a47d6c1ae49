"""The `python -m deploy` command line: one sub-command per function registered with `@command`.

A new command is one decorated function in any module imported at the bottom of this file.
"""

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from deploy.aws import DeployError, Run
from deploy.stack import StackError, load

Handler = Callable[[argparse.Namespace, Run], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None):
    """Registers `fn(args, run) -> exit status` as `python -m deploy NAME`; its docstring is the help."""

    def register(fn: Handler) -> Handler:
        COMMANDS[name] = (fn.__doc__ or "", arguments, fn)
        return fn

    return register


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (doc, arguments, _) in COMMANDS.items():
        cmd = sub.add_parser(
            name,
            help=doc.splitlines()[0],
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_argument("--stack", required=True, type=Path, metavar="FILE", help="the stack file (TOML)")
        arguments(cmd)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _, _, handler = COMMANDS[args.command]
    try:
        run = Run(load(args.stack), dry_run=args.command == "plan")
        return handler(args, run)
    except (StackError, DeployError) as err:
        print(f"deploy {args.command}: {err}", file=sys.stderr)
        return 2 if isinstance(err, StackError) else 1


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2) if not isinstance(value, str) else value)


# Modules that register commands.
from deploy import commands, loadtest  # noqa: E402, F401
