"""What every argparse subcommand shares: one-line errors with exit status 2 and the ``--artifact`` option."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from legato_pl.errors import LegatoInputError

INPUT_ERROR_EXIT = 2


def fail(message: str, status: int = INPUT_ERROR_EXIT) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``status``."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(status)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one ``error:`` line (exit 2), like every other input error."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


class _DeprecatedArtifact(argparse.Action):
    """``--adapters DIR``: the former name of ``--artifact``; accepted with a one-line note."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"note: {option_string} is deprecated; use --artifact", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_artifact_argument(parser: argparse.ArgumentParser, required: bool, help: str) -> None:
    """``--artifact DIR`` (and its deprecated alias ``--adapters``) into ``dest="artifact"``."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--artifact", help=help)
    group.add_argument("--adapters", dest="artifact", action=_DeprecatedArtifact, help=argparse.SUPPRESS)


def run_parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None, body: Callable[[argparse.Namespace], Any]
               ) -> Any:
    """Parse ``argv`` and run ``body``; our input errors end as one ``error:`` line with exit status 2."""
    args = parser.parse_args(argv)
    try:
        return body(args)
    except LegatoInputError as err:
        fail(str(err))
