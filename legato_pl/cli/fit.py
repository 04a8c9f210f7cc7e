"""``python -m legato_pl fit|validate|test|predict --config ...``: LightningCLI over any module and datamodule."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

from legato_pl.checkpoint import SafeCheckpointIO
from legato_pl.cli.common import fail
from legato_pl.errors import LegatoInputError

SUBCOMMANDS = ("fit", "validate", "test", "predict")


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


def main(argv: Sequence[str] | None = None) -> LightningCLI:
    """Run LightningCLI on ``argv`` (None: ``sys.argv``); bad input ends as one ``error:`` line, exit 2."""
    try:
        return LegatoCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            args=None if argv is None else list(argv),  # None: LightningCLI reads sys.argv (both would warn)
        )
    except FloatingPointError as err:  # the numerical guard of the training step
        fail(str(err), status=1)
    except pickle.UnpicklingError as err:  # LightningCLI reads --ckpt_path with weights_only=True itself
        detail = next((line for line in str(err).splitlines() if "GLOBAL" in line), "").strip()
        fail(f"refusing to load the checkpoint: it holds pickled objects that could run code. {detail}")
    except (LegatoInputError, ValueError) as err:
        ours = _input_error(err)
        if ours is None:
            raise
        fail(str(ours))


__all__ = ["LegatoCLI", "SUBCOMMANDS", "main"]
