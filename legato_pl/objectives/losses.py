"""Unlearning objectives as pure functions: tensors in, tensors out, no Lightning inside."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

FORGET_TARGETS = ("anchor", "negative", "other", "untrained")


def forget_target(eps_null: Tensor, eps_cond: Tensor | None = None, target: str = "anchor", eta: float = 1.0) -> Tensor:
    """What the student should predict for the forget identity.

    ``anchor`` (GUIDE "average"): the teacher's unconditional prediction; ``other``: the teacher's prediction
    under another person's condition (the caller passes it as ``eps_null``; MACE / UCE-style replacement);
    ``untrained``: the teacher's prediction under a condition it never trained (passed as ``eps_null``: what a model
    retrained without the person does with their condition).
    ``negative`` (GUIDE "extrapolate", ESD-style): ``eps_null - eta * (eps_cond - eps_null)``.
    """
    if target in ("anchor", "other", "untrained"):
        return eps_null
    if target == "negative":
        if eps_cond is None:
            raise ValueError("the 'negative' forget target needs the teacher's conditional prediction")
        return eps_null - eta * (eps_cond - eps_null)
    raise ValueError(f"unknown forget target {target!r}; valid: {FORGET_TARGETS}")


def preservation(eps_student: Tensor, eps_teacher: Tensor) -> Tensor:
    """GUIDE retain/preservation term: match the frozen teacher (in fp32 whatever the base's dtype)."""
    return F.mse_loss(eps_student.float(), eps_teacher.float())


def trajectory_consistency(trajectories: Iterable[Tensor]) -> Tensor:
    """LEGATO: mean over adapters and steps of the mean squared difference of consecutive ODE states.

    Each trajectory is ``[steps + 1, ...]``; trajectories with a single state contribute zero.
    """
    terms = [((s[1:] - s[:-1]) ** 2).mean() for s in trajectories if s.shape[0] > 1]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).mean()


def adjacent_embeddings(e_forget: Tensor, e_retain: Tensor, alpha: Tensor) -> Tensor:
    """GUIDE adjacency: ``e_f + alpha * unit(e_r - e_f)``, one ``alpha`` per row."""
    direction = F.normalize(e_retain - e_forget, dim=-1)
    return e_forget + alpha.reshape(-1, *([1] * (e_forget.dim() - 1))) * direction
