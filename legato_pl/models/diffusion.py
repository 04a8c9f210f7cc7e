"""Small helpers shared by the LightningModules: forward diffusion at random timesteps, EMA."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn


def add_noise(scheduler: DDPMScheduler, x0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(x_t, noise, t)`` with ``t`` uniform over the scheduler's training timesteps."""
    noise = torch.randn_like(x0)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
    return scheduler.add_noise(x0, noise, t), noise, t


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)
