"""Small helpers shared by the LightningModules: forward diffusion at random timesteps, EMA."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn


def add_noise(
    scheduler: DDPMScheduler, x0: Tensor, generator: torch.Generator | None = None, rank: int = 0, world: int = 1
) -> tuple[Tensor, Tensor, Tensor]:
    """``(x_t, noise, t)`` with ``t`` uniform over the scheduler's training timesteps.

    ``x0`` holds rows ``rank::world`` of a global batch; the draws are made for the whole global batch
    and sliced the same way, so W processes add exactly the noise one process would.
    """
    n = x0.shape[0] * world
    noise = torch.randn((n, *x0.shape[1:]), generator=generator, device=x0.device, dtype=x0.dtype)[rank::world]
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), device=x0.device, generator=generator)
    t = t[rank::world]
    return scheduler.add_noise(x0, noise, t), noise, t


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """Randomness of one optimisation step: identical whether or not the fit was resumed or split."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)
