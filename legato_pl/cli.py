"""``python -m legato_pl fit|validate|test|predict --config ...`` (LightningCLI), ``sample``, ``audit``, ``merge``."""

from __future__ import annotations

import importlib
import pickle
import sys

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

from legato_pl.checkpoint import SafeCheckpointIO
from legato_pl.errors import LegatoInputError

SCRIPTS = {"sample": "legato_pl.sample_cli:sample_main", "audit": "legato_pl.audit.report:audit_main",
           "merge": "legato_pl.merge:merge_main"}


def _input_error(err: BaseException) -> LegatoInputError | None:
    """Our error, also when the config parser wrapped it while instantiating a class."""
    seen = 0
    while err is not None and seen < 20:
        if isinstance(err, LegatoInputError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


class LegatoCLI(LightningCLI):
    """LightningCLI whose trainer loads checkpoints safely (``weights_only=True``)."""

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # keep a user's own plugin
            trainer.strategy.checkpoint_io = SafeCheckpointIO()
        return trainer


def main(args: list[str] | None = None) -> None:
    """Run the CLI (the ``legato-pl`` console script). Bad user input stops with one ``error:`` line and
    exit status 2. Returns None, so ``sys.exit(main())`` exits 0 after success."""
    run(args)


def run(args: list[str] | None = None) -> LightningCLI | None:
    """:func:`main`, returning the LightningCLI object (None for ``sample``)."""
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv[:1] and argv[0] in SCRIPTS:  # our own subcommands (argparse), beside LightningCLI's
            module, function = SCRIPTS[argv[0]].split(":")
            getattr(importlib.import_module(module), function)(argv[1:])
            return None
        return LegatoCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            args=args,  # None: LightningCLI reads sys.argv itself (passing both makes it warn)
        )
    except FloatingPointError as err:  # the numerical guard of the training step
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except pickle.UnpicklingError as err:  # LightningCLI reads --ckpt_path with weights_only=True itself
        detail = next((line for line in str(err).splitlines() if "GLOBAL" in line), "").strip()
        print(f"error: refusing to load the checkpoint: it holds pickled objects that could run code. {detail}",
              file=sys.stderr)
        raise SystemExit(2) from None
    except (LegatoInputError, ValueError) as err:
        ours = _input_error(err)
        if ours is None:
            raise
        print(f"error: {ours}", file=sys.stderr)
        raise SystemExit(2) from None
