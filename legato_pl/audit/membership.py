"""Loss-based membership inference: does the model still denoise the forget person's training photos
better than photos of the same person it never saw?

The score of a photo is minus its denoising error averaged over fixed timesteps, each with a fixed
noise draw (the frozen forward process, as in SecMI's t-error and the loss attacks it builds on), so
before/after scores differ only by the model. AUC 0.5 means members and non-members look alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import Tensor, nn

from legato_pl.audit.inversion import class_conditioning
from legato_pl.conditioning import Conditioning
from legato_pl.models.diffusion import diffusion_target
from legato_pl.sampling import initial_noise

DEFAULT_TIMESTEPS = (50, 100, 200, 300, 400, 500)  # fractions of 1000; rescaled to the scheduler's range


@torch.no_grad()
def denoising_errors(
    unet: nn.Module,
    scheduler: DDPMScheduler,
    photos: Tensor,
    label: int,
    timesteps: tuple[int, ...] = DEFAULT_TIMESTEPS,
    seed: int = 0,
    conditioning: Conditioning | None = None,
) -> Tensor:
    """``[N, len(timesteps)]`` mean squared denoising error of each photo at each timestep, conditioned on
    identity ``label`` (text models: a template drawn per photo from ``seed``, the same at every call)."""
    conditioning = conditioning or class_conditioning(unet)
    device = next(unet.parameters()).device
    x0 = conditioning.to_latents(photos.to(device))
    labels = torch.full((len(photos),), label)
    cond = conditioning.encode(unet, labels, generator=torch.Generator().manual_seed(seed)).to(device)
    total = scheduler.config.num_train_timesteps
    out = []
    for k, step in enumerate(timesteps):
        t = torch.full((len(photos),), min(total - 1, step * total // 1000), device=device)
        noise = initial_noise([seed * 7919 + 1000 * k + i for i in range(len(photos))], tuple(x0.shape[1:])).to(device)
        pred = conditioning.predict(unet, scheduler.add_noise(x0, noise, t), t, cond)
        err = F.mse_loss(pred.float(), diffusion_target(scheduler, x0, noise, t).float(), reduction="none")
        out.append(err.flatten(1).mean(1).cpu())
    return torch.stack(out, dim=1)


def auc(members: Tensor, nonmembers: Tensor) -> float:
    """P(score of a member > score of a non-member), ties counted half (Mann-Whitney)."""
    diff = members[:, None] - nonmembers[None, :]
    return float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean())


def tpr_at_fpr(members: Tensor, nonmembers: Tensor, fpr: float = 0.01) -> float:
    """Share of members scored above the threshold that at most ``fpr`` of the non-members exceed.

    With fewer than ``1 / fpr`` non-members the threshold is their maximum (no false positive at all).
    """
    ranked = nonmembers.sort(descending=True).values
    allowed = int(fpr * len(ranked))
    threshold = ranked[allowed] if allowed < len(ranked) else ranked[-1] - 1
    return float((members > threshold).float().mean())


def membership_inference(member_errors: Tensor, nonmember_errors: Tensor) -> dict[str, float]:
    """AUC and TPR at 1% FPR of the loss attack (score = minus the mean denoising error)."""
    members, nonmembers = -member_errors.mean(1), -nonmember_errors.mean(1)
    return {"auc": auc(members, nonmembers), "tpr_at_1pct": tpr_at_fpr(members, nonmembers),
            "members": len(members), "nonmembers": len(nonmembers)}
