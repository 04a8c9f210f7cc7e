"""Teach a from-config text encoder to tell names apart before the UNet learns to read it.

A real Stable Diffusion text encoder comes out of CLIP's contrastive pretraining: two people's names
give clearly different states, whatever the sentence around them. A CLIP text model built from a
config at random init does not: over the 40 LFW names in "a photo of {}", the name explains ~6% of the
variance of a token state (the rest is position and template), and a UNet trained on such states learns
to ignore them (name prompts at chance; benchmarks/name_gap.py measures it). This module gives the toy
base what CLIP gives SD: a short contrastive stage on the text side alone, every training template of a
name pulled to one prototype and pushed from the others', on the mean of all token states (what a
cross-attention sees before it has learned where to look).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def prompt_features(text_encoder: nn.Module, token_ids: Tensor) -> Tensor:
    """Unit-norm mean of all token states (padding included: cross-attention attends to it too)."""
    return F.normalize(text_encoder(token_ids)[0].mean(1), dim=-1)


def separate_names(text_encoder: nn.Module, token_ids: Tensor, labels: Tensor, steps: int = 300, lr: float = 1e-3,
                   temperature: float = 0.1, seed: int = 0) -> list[float]:
    """Train ``text_encoder`` in place so each name's prompts share a direction no other name has.

    ``token_ids``: the padded training prompts (every template of every name), ``labels``: the name index
    of each. A cosine classifier over learnable prototypes (one per name, discarded afterwards) is fitted
    jointly with the encoder; every step sees every prompt. The encoder's train mode and ``requires_grad``
    are restored afterwards. Deterministic for a given ``seed`` (each DDP rank computes the same encoder).
    Returns the loss per step.
    """
    device = token_ids.device
    labels = labels.to(device)
    gen = torch.Generator().manual_seed(seed)
    num_names, width = int(labels.max()) + 1, text_encoder.config.hidden_size
    prototypes = nn.Parameter(torch.randn(num_names, width, generator=gen).to(device))
    was_training, was_trainable = text_encoder.training, [p.requires_grad for p in text_encoder.parameters()]
    text_encoder.train().requires_grad_(True)
    opt = torch.optim.Adam([*text_encoder.parameters(), prototypes], lr=lr)
    losses = []
    with torch.enable_grad():
        for _ in range(steps):
            logits = prompt_features(text_encoder, token_ids) @ F.normalize(prototypes, dim=-1).T / temperature
            loss = F.cross_entropy(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    text_encoder.train(was_training)
    for p, trainable in zip(text_encoder.parameters(), was_trainable):
        p.requires_grad_(trainable)
    return losses
