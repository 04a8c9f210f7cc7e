"""Strength sweeps: sample before/after from shared seeds and compute every metric at each strength.

Used by the ``ForgettingCurve`` callback and the benchmarks, so both report the same definitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import SchedulerMixin
from torch import Tensor, nn

from legato_pl.adapters import ODEAdapters
from legato_pl.conditioning import Conditioning
from legato_pl.metrics.suite import UnlearningMetrics
from legato_pl.sampling import sample


@dataclass
class SamplingSettings:
    """How evaluation samples are drawn (DDIM, guidance, seeds shared by every strength)."""

    per_identity: int = 8
    guidance_scale: float = 3.0
    num_inference_steps: int = 25
    seed: int = 0
    batch_size: int = 64


@dataclass
class StrengthCurve:
    """Metric rows (one per strength) and the samples they were computed on."""

    rows: list[dict[str, float]] = field(default_factory=list)
    samples: dict[float, Tensor] = field(default_factory=dict)
    labels: Tensor | None = None


def strength_grid(knob: ODEAdapters | Any) -> list[float]:
    """The strengths a sweep of ``knob`` (ODE adapters or any unlearning method) visits by default: for
    ODE adapters the points of the solver's time grid (0, .25, .5, .75, 1 for the paper's solver)."""
    return knob.strength_grid()


@torch.no_grad()
def strength_curve(
    unet: nn.Module,
    scheduler: SchedulerMixin,
    knob: ODEAdapters | Any,
    labels: Tensor,
    null_class: int | None,
    metrics: UnlearningMetrics,
    strengths: list[float] | None = None,
    settings: SamplingSettings | None = None,
    seeds: list[int] | None = None,
    conditioning: Conditioning | None = None,
) -> StrengthCurve:
    """Sample ``labels`` at each strength (same seeds) and compute ``metrics`` against strength 0.

    ``knob`` is what has the strength: ODE adapters or any :class:`~legato_pl.methods.UnlearningMethod`.

    ``seeds`` (one per label) overrides ``settings.seed + i``: a DDP rank passes its shard's global seeds.
    """
    settings = settings or SamplingSettings()
    strengths = strength_grid(knob) if strengths is None else list(strengths)
    kwargs = dict(null_class=null_class, conditioning=conditioning, guidance_scale=settings.guidance_scale,
                  num_inference_steps=settings.num_inference_steps, seed=settings.seed,
                  batch_size=settings.batch_size, method=knob, seeds=seeds)
    curve = StrengthCurve(labels=labels.cpu())
    before = sample(unet, scheduler, labels, strength=0.0, **kwargs)
    for s in strengths:
        after = before if s == 0.0 else sample(unet, scheduler, labels, strength=s, **kwargs)
        metrics.reset()
        metrics.update(before, after, labels.cpu())
        curve.rows.append({"strength": s, **metrics.compute()})
        curve.samples[s] = after
    return curve
