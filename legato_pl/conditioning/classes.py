"""Class-conditional models (``UNet2DModel`` with ``num_class_embeds``): identity = class index."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn

from legato_pl.conditioning.base import Conditioning


@contextmanager
def class_embedding_override(unet: nn.Module, embedding: Tensor):
    """Within the block, the UNet's class embedding outputs ``embedding`` (for interpolated classes)."""
    handle = unet.class_embedding.register_forward_hook(lambda module, args, output: embedding.to(output.dtype))
    try:
        yield
    finally:
        handle.remove()


def predict_noise(unet: nn.Module, x: Tensor, t: Tensor, embedding: Tensor) -> Tensor:
    """The UNet's prediction conditioned on class *embeddings* (rows of ``class_embedding`` or mixes of them)."""
    dummy = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    with class_embedding_override(unet, embedding):
        return unet(x, t, class_labels=dummy).sample


class ClassConditioning(Conditioning):
    """Rows of the UNet's class-embedding table; the last class is the null class (∅ and the anchor)."""

    def __init__(self, identities: list[str], null_class: int):
        self.identities, self.null_class = list(identities), null_class

    def encode(self, unet: nn.Module, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return unet.class_embedding.weight[labels]

    def null(self, unet: nn.Module, n: int) -> Tensor:
        return unet.class_embedding.weight[self.null_class].expand(n, -1)

    def predict(self, unet: nn.Module, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return predict_noise(unet, x, t, cond)

    def untrained(self, unet: nn.Module, labels: Tensor) -> Tensor:
        """A fresh row per person, seeded by the label: normal with the identity rows' per-dimension mean and
        spread (a row that never receives data keeps its init, and training barely moves rows from theirs: the
        LFW base's rows have norm 16.1, a fresh N(0, 1) row of 256 dimensions 16)."""
        rows = unet.class_embedding.weight[[c for c in range(unet.class_embedding.weight.shape[0]) if c != self.null_class]]
        draws = torch.stack([torch.randn(rows.shape[1], generator=torch.Generator().manual_seed(int(y)))
                             for y in labels.tolist()])
        return rows.mean(0) + rows.std(0) * draws.to(rows)

    def soft_init(self, unet: nn.Module, label: int | None = None) -> Tensor:
        return unet.class_embedding.weight[self.null_class if label is None else label].detach().clone()

    def soft_condition(self, unet: nn.Module, vectors: Tensor) -> Tensor:
        return vectors.reshape(1, -1)

    def as_stranger(self, unet: nn.Module, label: int) -> ClassConditioning:
        with torch.no_grad():  # the person's row becomes the null class's: "nobody in particular"
            unet.class_embedding.weight[label] = unet.class_embedding.weight[self.null_class]
        return self
