"""Full fine-tuning baseline (GUIDE-style): the whole UNet trains against a frozen copy of the base.

The only method that copies the UNet. Strength interpolates the weights: ``base + s * (trained - base)``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from legato_pl.methods.base import UnlearningMethod


class Full(UnlearningMethod):
    """The whole UNet trains in place; the teacher is a frozen copy of the base taken at attach time."""

    name = "full"

    def __init__(self, unet: nn.Module):
        super().__init__(unet)
        self.frozen_teacher = copy.deepcopy(unet).requires_grad_(False).eval()
        self._trained: dict[str, torch.Tensor] | None = None
        unet.requires_grad_(True)

    @contextmanager
    def teacher(self) -> Iterator[nn.Module]:
        yield self.frozen_teacher

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self._unet.parameters())

    @torch.no_grad()
    def set_strength(self, value: float) -> None:
        if self._strength == 1.0:  # the UNet holds the trained weights now: remember them
            self._trained = {k: p.detach().clone() for k, p in self._unet.named_parameters()}
        base = dict(self.frozen_teacher.named_parameters())
        for name, p in self._unet.named_parameters():
            if value == 1.0:
                p.copy_(self._trained[name])
            else:
                p.copy_(base[name] + value * (self._trained[name] - base[name]))

    mergeable = True

    def merge(self) -> nn.Module:
        """The UNet already holds ``base + strength * (trained - base)``; the teacher copy is dropped."""
        del self.frozen_teacher
        return self._unet

    def save_weights(self, path: Path) -> None:
        self._unet.save_pretrained(str(path / "unet"))

    @torch.no_grad()
    def load_weights(self, path: Path) -> None:
        trained = type(self._unet).from_pretrained(str(path / "unet"))
        self._unet.load_state_dict(trained.state_dict())
