"""DDIM sampling with classifier-free guidance at a chosen adapter strength, from fixed seeds.

Row ``i`` of a call with ``seed=s`` always starts from the noise of seed ``s + i`` (or of ``seeds[i]``
when given, so a DDP rank can draw its shard of a global batch), so samples "before" (strength 0)
and "after" share their noise and differ only by the adapters.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, SchedulerMixin
from torch import Tensor, nn

from legato_pl.conditioning import ClassConditioning, Conditioning
from legato_pl.strength import StrengthKnob


def initial_noise(seeds: list[int], shape: tuple[int, ...]) -> Tensor:
    """One standard-normal tensor of ``shape`` per seed."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


@torch.no_grad()
def sample(
    unet: nn.Module,
    scheduler: SchedulerMixin,
    labels: Tensor,
    *,
    null_class: int | None = None,
    conditioning: Conditioning | None = None,
    guidance_scale: float = 3.0,
    num_inference_steps: int = 25,
    seed: int = 0,
    method: StrengthKnob | None = None,
    strength: float | None = None,
    batch_size: int = 64,
    seeds: list[int] | None = None,
    embeddings: Tensor | None = None,
) -> Tensor:
    """Images ``[N, C, H, W]`` in [-1, 1] for identities ``labels`` (DDIM, eta 0, guidance toward them).

    ``conditioning`` turns labels into conditions (default: the class table with ``null_class`` as ∅;
    with neither, the model is unconditional). ``embeddings`` ``[N, ...]``, when given, replace the
    conditions of ``labels`` (a condition that is no identity, e.g. one found by an inversion attack);
    guidance still pushes away from ∅. Latent models are decoded by the conditioning's VAE. ``method`` (any
    strength knob: an :class:`~legato_pl.methods.UnlearningMethod` or :class:`~legato_pl.adapters.ODEAdapters`)
    is held at ``strength`` for the call when both are given.
    """
    if method is not None and strength is not None:
        with method.at_strength(strength):
            return sample(unet, scheduler, labels, null_class=null_class, conditioning=conditioning,
                          guidance_scale=guidance_scale, num_inference_steps=num_inference_steps, seed=seed,
                          batch_size=batch_size, seeds=seeds, embeddings=embeddings)
    if conditioning is None and null_class is not None:
        conditioning = ClassConditioning([], null_class)
    if seeds is None:
        seeds = list(range(seed, seed + len(labels)))
    elif len(seeds) != len(labels):
        raise ValueError(f"{len(seeds)} seeds for {len(labels)} labels")
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    out = []
    for start in range(0, len(labels), batch_size):
        y = labels[start : start + batch_size].to(device)
        x = initial_noise(seeds[start : start + batch_size], (unet.config.in_channels, *size)).to(device, dtype)
        if conditioning is None:
            cond = null = None
        else:
            chosen = torch.Generator().manual_seed(seed + start)  # e.g. the prompt template of each row
            cond = (embeddings[start : start + batch_size].to(device) if embeddings is not None
                    else conditioning.encode(unet, y.cpu(), generator=chosen).to(device))
            null = conditioning.null(unet, len(y))
        ddim = DDIMScheduler.from_config(scheduler.config)
        ddim.set_timesteps(num_inference_steps, device=device)
        for t in ddim.timesteps:
            if conditioning is None:
                eps = unet(x, t).sample
            elif guidance_scale == 1.0:
                eps = conditioning.predict(unet, x, t.expand(len(x)), cond)
            else:
                eps_c, eps_u = conditioning.predict(unet, torch.cat([x, x]), t.expand(2 * len(x)),
                                                    torch.cat([cond.to(null.dtype), null])).chunk(2)
                eps = eps_u + guidance_scale * (eps_c - eps_u)
            x = ddim.step(eps, t, x).prev_sample
        images = conditioning.to_images(x) if conditioning is not None else x
        out.append(images.float().clamp(-1, 1).cpu())
    return torch.cat(out)
