"""DDIM sampling with classifier-free guidance at a chosen adapter strength, from fixed seeds.

Row ``i`` of a call with ``seed=s`` always starts from the noise of seed ``s + i`` (or of ``seeds[i]``
when given, so a DDP rank can draw its shard of a global batch), so samples "before" (strength 0)
and "after" share their noise and differ only by the adapters.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, SchedulerMixin
from torch import Tensor, nn

from legato_pl.adapters import ODEAdapters
from legato_pl.models.base import class_embedding_override


def initial_noise(seeds: list[int], shape: tuple[int, ...]) -> Tensor:
    """One standard-normal tensor of ``shape`` per seed."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


@torch.no_grad()
def sample(
    unet: nn.Module,
    scheduler: SchedulerMixin,
    labels: Tensor,
    *,
    null_class: int | None,
    guidance_scale: float = 3.0,
    num_inference_steps: int = 25,
    seed: int = 0,
    adapters: ODEAdapters | None = None,
    strength: float | None = None,
    batch_size: int = 64,
    seeds: list[int] | None = None,
    embeddings: Tensor | None = None,
) -> Tensor:
    """Images ``[N, C, H, W]`` in [-1, 1] for class ``labels`` (DDIM, eta 0, guidance toward the label).

    ``embeddings`` ``[N, D]``, when given, replace the class-embedding rows of ``labels`` (a condition
    that is no class, e.g. one found by an inversion attack); guidance still pushes away from the null class.
    """
    if adapters is not None and strength is not None:
        with adapters.at_strength(strength):
            return sample(unet, scheduler, labels, null_class=null_class, guidance_scale=guidance_scale,
                          num_inference_steps=num_inference_steps, seed=seed, batch_size=batch_size, seeds=seeds,
                          embeddings=embeddings)
    if seeds is None:
        seeds = list(range(seed, seed + len(labels)))
    elif len(seeds) != len(labels):
        raise ValueError(f"{len(seeds)} seeds for {len(labels)} labels")
    device = next(unet.parameters()).device
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    out = []
    for start in range(0, len(labels), batch_size):
        y = labels[start : start + batch_size].to(device)
        x = initial_noise(seeds[start : start + batch_size], (unet.config.in_channels, *size)).to(device)
        ddim = DDIMScheduler.from_config(scheduler.config)
        ddim.set_timesteps(num_inference_steps, device=device)
        guided = null_class is not None and guidance_scale != 1.0
        rows = None if embeddings is None else embeddings[start : start + batch_size].to(device)
        for t in ddim.timesteps:
            if guided:
                classes = torch.cat([y, torch.full_like(y, null_class)])
                eps_c, eps_u = _predict(unet, torch.cat([x, x]), t, classes, rows).chunk(2)
                eps = eps_u + guidance_scale * (eps_c - eps_u)
            else:
                eps = _predict(unet, x, t, y if null_class is not None else None, rows)
            x = ddim.step(eps, t, x).prev_sample
        out.append(x.clamp(-1, 1).cpu())
    return torch.cat(out)


def _predict(unet: nn.Module, x: Tensor, t: Tensor, classes: Tensor | None, rows: Tensor | None) -> Tensor:
    """The UNet's noise prediction; the first ``len(rows)`` rows conditioned on ``rows`` when given."""
    if rows is None:
        return unet(x, t, class_labels=classes).sample
    table = unet.class_embedding(classes)
    with class_embedding_override(unet, torch.cat([rows.to(table.dtype), table[len(rows):]])):
        return unet(x, t, class_labels=classes).sample
