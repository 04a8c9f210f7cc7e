"""The inner attacker of adversarial unlearning (AdvUnlearn / Receler style), for any conditioning.

Per forgotten person, a condition input (a class-embedding vector, or token embeddings of a text model) is
inverted against the *current* student: signed-gradient steps lower the plain diffusion loss of that person's
noised photos under it, exactly as the audit's condition inversion does from the outside. The unlearning
objective then also pushes the student away from the person under that condition (``w_adversarial``) or sends
it along a stranger's sampling path (``w_adversarial_path``), so erasure has to hold for the inputs that still
draw the person, not only for the person's name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from legato_pl.conditioning import Conditioning
from legato_pl.objectives.losses import preservation


class ConditionAdversary(nn.Module):
    """One learnable condition input per forgotten person, warm-started across training steps.

    Args:
        inits: where each person's search starts (:meth:`Conditioning.soft_init`: with the person's label the
            name's own input, as AdvUnlearn starts from the concept's prompt; without, the null input, where the
            audit's condition inversion starts).
        steps: signed-gradient steps per training step (0: the inputs never move).
        lr: the size of each step (per element).
    """

    def __init__(self, inits: list[Tensor], steps: int = 2, lr: float = 1e-2):
        super().__init__()
        if steps < 0 or lr <= 0 or not inits:
            raise ValueError(f"adversary needs steps >= 0, lr > 0 and a person (got {steps}, {lr}, {len(inits)})")
        self.steps, self.lr, self.num_people = steps, lr, len(inits)
        for i, init in enumerate(inits):  # one buffer each: a text model's names differ in token count
            self.register_buffer(f"input_{i}", init.detach().float().clone())

    @property
    def inputs(self) -> list[Tensor]:
        return [getattr(self, f"input_{i}") for i in range(self.num_people)]

    def conditions(self, unet: nn.Module, conditioning: Conditioning, rows: Tensor,
                   inputs: list[Tensor] | None = None) -> Tensor:
        """The conditions ``unet`` makes of the inputs of ``rows`` (one per sample)."""
        inputs = self.inputs if inputs is None else inputs
        return torch.cat([conditioning.soft_condition(unet, inputs[r]) for r in rows.tolist()])

    @torch.enable_grad()
    def attack(self, unet: nn.Module, conditioning: Conditioning, x_t: Tensor, t: Tensor, target: Tensor,
               rows: Tensor, reduce: Callable[[Tensor], Tensor] = lambda g: g) -> list[float]:
        """``self.steps`` steps that make ``unet`` denoise ``x_t`` (to ``target``) better under the inputs of
        ``rows``; only the inputs change (no gradient reaches the model). ``reduce`` averages the gradient over
        processes so every rank keeps the same inputs. Returns the loss before each step."""
        losses = []
        for _ in range(self.steps):
            inputs = [x.detach().requires_grad_(True) for x in self.inputs]
            cond = self.conditions(unet, conditioning, rows, inputs).to(x_t.dtype)
            loss = preservation(conditioning.predict(unet, x_t, t, cond), target)  # the plain diffusion loss
            grads = torch.autograd.grad(loss, inputs, allow_unused=True)
            with torch.no_grad():
                for x, g in zip(self.inputs, grads):
                    x -= self.lr * reduce(torch.zeros_like(x) if g is None else g).sign()
            losses.append(loss.item())
        return losses
