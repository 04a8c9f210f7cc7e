"""The ODE adapter: integrate dh/dt = f(h) from 0 to strength * t_end with torchdiffeq."""

from __future__ import annotations

import math

import torch
from diffusers.models.embeddings import get_timestep_embedding
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from legato_pl.adapters.config import FIXED_GRID_METHODS, ODEAdapterConfig

TIMESTEP_EMBED_DIM = 64


def time_grid(end: float, step: float) -> list[float]:
    """Points 0, step, 2*step, ... up to ``end`` (``end`` included; the last interval may be shorter)."""
    n_full = math.floor(end / step + 1e-9)
    points = [k * step for k in range(n_full + 1)]
    if end - points[-1] > 1e-9:
        points.append(end)
    else:
        points[-1] = end
    return points


class VectorField(nn.Module):
    """f(h) = conv1x1 -> LeakyReLU -> conv1x1, the last conv zero-initialised so f == 0 at init."""

    def __init__(self, channels: int, hidden: int, negative_slope: float = 0.2, timestep_conditioning: bool = False):
        super().__init__()
        self.inp = nn.Conv2d(channels, hidden, kernel_size=1)
        self.act = nn.LeakyReLU(negative_slope)
        self.out = nn.Conv2d(hidden, channels, kernel_size=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.time_bias = nn.Linear(TIMESTEP_EMBED_DIM, hidden) if timestep_conditioning else None
        self.timestep_embedding: Tensor | None = None  # set per UNet forward when conditioning is on

    def forward(self, t: Tensor, h: Tensor) -> Tensor:  # torchdiffeq calls func(t, y)
        z = self.inp(h)
        if self.time_bias is not None:
            if self.timestep_embedding is None:
                raise RuntimeError("timestep-conditioned adapter called without a diffusion timestep")
            z = z + self.time_bias(self.timestep_embedding.to(z.dtype))[:, :, None, None]
        return self.out(self.act(z))


class ODEAdapter(nn.Module):
    """One adapter for one UNet stage. ``forward`` returns the end state and the visited states."""

    def __init__(self, channels: int, config: ODEAdapterConfig):
        super().__init__()
        self.channels = channels
        self.config = config
        self.field = VectorField(channels, config.hidden, config.negative_slope, config.timestep_conditioning)

    def set_timestep(self, timestep: Tensor | None, batch: int) -> None:
        if self.field.time_bias is None or timestep is None:
            return
        timestep = torch.as_tensor(timestep, device=self.field.inp.weight.device).reshape(-1).float()
        self.field.timestep_embedding = get_timestep_embedding(timestep.expand(batch), TIMESTEP_EMBED_DIM)

    def forward(self, h: Tensor, strength: float = 1.0) -> tuple[Tensor, Tensor]:
        if strength <= 0.0:
            return h, h.unsqueeze(0)
        cfg = self.config
        t = torch.tensor(time_grid(strength * cfg.t_end, cfg.step_size), dtype=h.dtype, device=h.device)
        solve = odeint_adjoint if cfg.adjoint else odeint
        if cfg.method in FIXED_GRID_METHODS:
            # fixed-grid solvers step exactly between the grid points we asked for
            states = solve(self.field, h, t, method=cfg.method)
        else:
            states = solve(self.field, h, t, method=cfg.method, rtol=cfg.rtol, atol=cfg.atol)
        return states[-1], states
