"""Small helpers shared by the LightningModules: forward diffusion at random timesteps, EMA."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn


def add_noise(
    scheduler: DDPMScheduler, x0: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(x_t, noise, t)`` with ``t`` uniform over the scheduler's training timesteps."""
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device, generator=generator)
    return scheduler.add_noise(x0, noise, t), noise, t


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """Randomness of one optimisation step on one rank: identical whether or not the fit was resumed."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + step) * 1_009 + rank)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)
