"""``python -m legato_pl <subcommand>`` (console script ``legato-pl``): one module per subcommand.

``fit`` / ``validate`` / ``test`` / ``predict`` are LightningCLI's (:mod:`legato_pl.cli.fit`); ``sample``,
``audit`` and ``merge`` are ours (:mod:`legato_pl.cli.sample`, ...). Every input error ends as one
``error: ...`` line on stderr with exit status 2.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

from legato_pl.cli.common import fail

SUBCOMMANDS = {  # name -> (module, one line of help)
    "fit": ("legato_pl.cli.fit", "train: a base model or an unlearning run (LightningCLI: --config, --help)"),
    "validate": ("legato_pl.cli.fit", "LightningCLI's validate loop on a config"),
    "test": ("legato_pl.cli.fit", "LightningCLI's test loop on a config"),
    "predict": ("legato_pl.cli.fit", "LightningCLI's predict loop on a config"),
    "sample": ("legato_pl.cli.sample", "image grid of named people at chosen strengths (no artifact: the base)"),
    "audit": ("legato_pl.cli.audit", "attacks that try to bring the forgotten person back; updates the model card"),
    "merge": ("legato_pl.cli.merge", "fold a mergeable artifact (lora, full) into a plain diffusers pipeline"),
}


def overview() -> str:
    """The top-level help: every subcommand with one line."""
    width = max(map(len, SUBCOMMANDS))
    rows = [f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()]
    return "\n".join(["usage: python -m legato_pl <subcommand> [options]   (each takes --help)", "",
                      "Make a diffusion model forget a person (LEGATO ODE adapters and baselines).", "",
                      "subcommands:", *rows])


def run(args: Sequence[str] | None = None) -> Any:
    """Run one subcommand and return what it made (the LightningCLI object, a path, an audit result)."""
    argv = sys.argv[1:] if args is None else list(args)
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
        if not argv:
            raise SystemExit(2)
        return None
    if argv[0] not in SUBCOMMANDS:
        fail(f"unknown subcommand {argv[0]!r}; choose one of: {', '.join(SUBCOMMANDS)}")
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    if module.__name__.endswith(".fit"):
        return module.main(args)  # LightningCLI takes the subcommand itself (None: it reads sys.argv)
    return module.main(argv[1:])


def main(args: Sequence[str] | None = None) -> None:
    """The console script: returns None, so ``sys.exit(main())`` exits 0 after success."""
    run(args)


__all__ = ["SUBCOMMANDS", "main", "overview", "run"]
