"""SampleGrid: fixed-seed samples for chosen identities every N steps, logged to TensorBoard."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid
from typing_extensions import override

from legato_pl.sampling import sample


class SampleGrid(pl.Callback):
    """Log ``samples/grid`` (rows = identities, same seeds every time) every ``every_n_steps`` steps.

    ``identities`` are names; default: the forget identities and the first retain one.
    """

    def __init__(self, every_n_steps: int = 50, identities: list[str] | None = None, per_identity: int = 4,
                 guidance_scale: float = 3.0, num_inference_steps: int = 25, seed: int = 0):
        self.every_n_steps = every_n_steps
        self.identities = identities
        self.per_identity = per_identity
        self.guidance_scale = guidance_scale
        self.num_inference_steps = num_inference_steps
        self.seed = seed

    @rank_zero_only
    def run(self, trainer: pl.Trainer, module: pl.LightningModule) -> torch.Tensor:
        names = self.identities or [*trainer.datamodule.forget, *trainer.datamodule.retain[:1]]
        labels = torch.tensor([module.identities.index(n) for n in names]).repeat_interleave(self.per_identity)
        images = sample(module.unet, module.scheduler, labels, conditioning=module.conditioning,
                        guidance_scale=self.guidance_scale, num_inference_steps=self.num_inference_steps,
                        seed=self.seed)
        grid = make_grid(images * 0.5 + 0.5, nrow=self.per_identity).clamp(0, 1)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples/grid", grid, trainer.global_step)
        return grid

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.run(trainer, pl_module)
