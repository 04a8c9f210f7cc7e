"""``python -m legato_pl fit|validate|test|predict --config ...`` (LightningCLI)."""

from __future__ import annotations

import sys

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

from legato_pl.errors import LegatoInputError


def main(args: list[str] | None = None) -> LightningCLI | None:
    """Run the CLI. Bad user input stops with one ``error:`` line and exit status 2."""
    try:
        return LightningCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except LegatoInputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
