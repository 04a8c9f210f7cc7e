"""Condition inversion (Concept Inversion / textual-inversion style): can a fresh condition draw the person?

With the model frozen, one class-embedding vector is optimised on the forget person's photos with the
plain diffusion loss, then sampled from. Run with the same budget on the base model for the reference:
how well this attack can draw the person at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import Tensor, nn

from legato_pl.conditioning import predict_noise
from legato_pl.models.diffusion import add_noise, step_generator


def diffusion_target(scheduler: DDPMScheduler, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """What the UNet predicts under the scheduler's ``prediction_type`` (epsilon or v)."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return noise


@dataclass
class InversionResult:
    embedding: Tensor  # [D], the found condition
    losses: list[float]  # diffusion loss per step


def invert_condition(
    unet: nn.Module,
    scheduler: DDPMScheduler,
    photos: Tensor,
    init: Tensor,
    steps: int = 300,
    lr: float = 5e-3,
    batch_size: int = 8,
    seed: int = 0,
) -> InversionResult:
    """Optimise one condition embedding (started at ``init``) so the frozen ``unet`` denoises ``photos``.

    Only the embedding receives gradients; the UNet (with whatever method is attached) is untouched.
    """
    if steps < 1 or len(photos) == 0:
        raise ValueError(f"inversion needs photos and at least one step (got {len(photos)} photos, {steps} steps)")
    device = next(unet.parameters()).device
    photos = photos.to(device)
    embedding = init.detach().clone().float().to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([embedding], lr=lr)
    frozen = [p.requires_grad for p in unet.parameters()]
    unet.requires_grad_(False)
    losses = []
    try:
        for step in range(steps):
            gen = step_generator(seed, step, device)
            idx = torch.randint(0, len(photos), (min(batch_size, len(photos)),), generator=gen, device=device)
            x0 = photos[idx]
            x_t, noise, t = add_noise(scheduler, x0, gen)
            pred = predict_noise(unet, x_t, t, embedding.expand(len(x0), -1))
            loss = F.mse_loss(pred.float(), diffusion_target(scheduler, x0, noise, t).float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        for p, flag in zip(unet.parameters(), frozen):
            p.requires_grad_(flag)
    return InversionResult(embedding.detach(), losses)
