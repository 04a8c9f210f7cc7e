"""What every argparse subcommand shares: one-line errors with exit status 2 and the ``--artifact`` option."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import torch

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


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="where the models run: cpu, cuda, cuda:1, mps (default cpu)")


def check_device(name: str) -> torch.device:
    """``name`` as a device this machine has (one line naming what is missing otherwise)."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise LegatoInputError(f"--device {name!r} is not a device (cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise LegatoInputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise LegatoInputError(f"--device {name}: MPS is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps"):
        raise LegatoInputError(f"--device {name}: legato_pl runs on cpu, cuda or mps")
    return device


def run_parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None, body: Callable[[argparse.Namespace], Any]
               ) -> Any:
    """Parse ``argv`` and run ``body``; our input errors end as one ``error:`` line with exit status 2."""
    args = parser.parse_args(argv)
    try:
        return body(args)
    except LegatoInputError as err:
        fail(str(err))
