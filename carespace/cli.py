"""The `carespace` command line: each command prints a one-line error and exits 1 on bad input."""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# Modules that add sub-commands: each has register(subparsers) and sets func(args) -> int.
COMMAND_MODULES = ["carespace.commands_core", "carespace.commands_accounts", "carespace.commands_smart",
                   "carespace.commands_bundles"]


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carespace", description="CareSpace patient portal and FHIR server")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .migrations import UnknownRevision  # every command may meet a schema a newer release wrote

    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (CommandError, UnknownRevision) as exc:
        name = " ".join(n for n in (args.command, getattr(args, "db_command", None)) if n)  # `carespace db current`
        print(f"carespace {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
