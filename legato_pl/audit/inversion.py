"""Condition inversion (Concept Inversion / textual-inversion style): can a fresh condition draw the person?

With the model frozen, a fresh condition is optimised on the forget person's photos with the plain
diffusion loss, then sampled from: a class-embedding vector for class-conditional models, a token
embedding standing for the name in a prompt template for text-to-image models. Run with the same
budget on the base model for the reference: how well this attack can draw the person at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn

from legato_pl.conditioning import ClassConditioning, Conditioning
from legato_pl.models.diffusion import denoising_loss, random_rows, step_generator


def class_conditioning(unet: nn.Module) -> ClassConditioning:
    """The conditioning of a class-conditional UNet when none is given (the last class is ∅)."""
    return ClassConditioning([], unet.config.num_class_embeds - 1)


@dataclass
class InversionResult:
    embedding: Tensor  # the learned input (a class-embedding vector, or token embeddings [K, D])
    condition: Tensor  # [1, ...] the condition it makes: ``sample(embeddings=condition.expand(n, ...))``
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
    conditioning: Conditioning | None = None,
) -> InversionResult:
    """Optimise the input ``init`` of a condition (see :meth:`Conditioning.soft_init`) so the frozen ``unet``
    denoises ``photos`` (images in [-1, 1]; latent models encode them).

    Only the embedding receives gradients; the UNet (with whatever method is attached) is untouched.
    """
    conditioning = conditioning or class_conditioning(unet)
    if steps < 1 or len(photos) == 0:
        raise ValueError(f"inversion needs photos and at least one step (got {len(photos)} photos, {steps} steps)")
    device = next(unet.parameters()).device
    photos = conditioning.to_latents(photos.to(device))
    embedding = init.detach().clone().float().to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([embedding], lr=lr)
    frozen = [p.requires_grad for p in unet.parameters()]
    unet.requires_grad_(False)
    losses = []
    try:
        for step in range(steps):
            gen = step_generator(seed, step, device)
            x0 = photos[random_rows(len(photos), batch_size, gen)]
            cond = conditioning.soft_condition(unet, embedding)
            cond = cond.expand(len(x0), *cond.shape[1:])
            loss = denoising_loss(scheduler, x0, partial(conditioning.predict, unet, cond=cond), gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        for p, flag in zip(unet.parameters(), frozen):
            p.requires_grad_(flag)
    with torch.no_grad():
        condition = conditioning.soft_condition(unet, embedding)
    return InversionResult(embedding.detach(), condition, losses)
