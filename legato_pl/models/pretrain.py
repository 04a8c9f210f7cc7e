"""DiffusionPretrainModule: the class-conditional base DDPM (identity = class label)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from diffusers import DDPMScheduler
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from legato_pl.models.base import build_unet, save_base_model
from legato_pl.models.diffusion import denoising_loss, ema_update, micro_step, step_generator


class PretrainBase(pl.LightningModule):
    """What every base pretraining shares: AdamW with linear warm-up and an EMA of the UNet
    (``hparams``: ``lr``, ``warmup_steps``, ``ema_decay``; subclasses set ``self.unet`` / ``self.ema``)."""

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.unet.parameters())

    def step_draws(self, rows: int, dropout: float, batch_idx: int) -> tuple[torch.Generator, torch.Tensor, int, int]:
        """``(generator, dropped, rank, world)`` of this micro-batch: the seeded generator of (seed, micro step) and
        which of this rank's ``rows`` lose their condition (probability ``dropout``, drawn for the global batch)."""
        rank, world = self.trainer.global_rank, self.trainer.world_size
        gen = step_generator(self.hparams.seed, micro_step(self, batch_idx), self.device)
        drop = torch.rand(rows * world, device=self.device, generator=gen)[rank::world]
        return gen, drop < dropout, rank, world

    @override
    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            step = self.global_step
            decay = min(self.hparams.ema_decay, (1 + step) / (10 + step))  # warm-up for short runs
            ema_update(self.ema, self.unet, decay)

    @override
    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.trainable_parameters(), lr=self.hparams.lr, weight_decay=0.0)
        warmup = max(1, self.hparams.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class DiffusionPretrainModule(PretrainBase):
    """Trains a class-conditional DDPM with label dropout to a null class (for guidance and the
    ``anchor`` target) and writes a diffusers pipeline directory plus ``identities.json``.

    Args:
        output_dir: where the pipeline directory is written at the end of fit.
        unet: overrides of :func:`legato_pl.models.base.default_unet_config` (UNet2DModel kwargs).
        label_dropout: probability of replacing a label with the null class.
        ema_decay: EMA of the weights saved in the pipeline (``None`` saves the raw weights).
        seed: seeds the per-step noise, timesteps and label dropout (resumed fits see the same draws).
    """

    def __init__(
        self,
        output_dir: str = "runs/base",
        unet: dict[str, Any] | None = None,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        label_dropout: float = 0.1,
        lr: float = 2e-4,
        warmup_steps: int = 100,
        ema_decay: float | None = 0.999,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule)
        self.unet = None
        self.ema = None
        self.identities: list[str] = []

    @override
    def configure_model(self) -> None:
        if self.unet is not None:
            return
        dm = self.trainer.datamodule
        self.identities = list(dm.class_names)
        self.unet = build_unet(self.hparams.unet, len(self.identities), dm.image_size)
        if self.hparams.ema_decay is not None:
            self.ema = copy.deepcopy(self.unet).requires_grad_(False)
        rank_zero_info(f"base UNet: {sum(p.numel() for p in self.unet.parameters()):,} parameters, "
                       f"{len(self.identities)} identities + null class")

    @property
    def null_class(self) -> int:
        return len(self.identities)

    @override
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images, labels = batch["images"], batch["labels"]
        gen, dropped, rank, world = self.step_draws(len(labels), self.hparams.label_dropout, batch_idx)
        labels = torch.where(dropped, torch.full_like(labels, self.null_class), labels)
        loss = denoising_loss(self.scheduler, images, lambda x, t: self.unet(x, t, class_labels=labels).sample, gen,
                              rank, world)
        self.log("train/loss", loss, prog_bar=True)
        return loss


    @override
    def on_train_end(self) -> None:
        if self.trainer.is_global_zero:
            unet = self.ema if self.ema is not None else self.unet
            path = save_base_model(Path(self.hparams.output_dir), unet, self.scheduler, self.identities)
            rank_zero_info(f"base model written to {path}")
