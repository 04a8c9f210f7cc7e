"""Identity metrics over precomputed embeddings (``[N, D]``, from an identity encoder).

All states are sums reduced with ``dist_reduce_fx="sum"``, so the metrics are exact under DDP.
An empty metric computes NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from legato_pl.errors import LegatoInputError


def _check_embeddings(emb: Tensor, what: str = "embeddings") -> Tensor:
    if not isinstance(emb, Tensor) or emb.ndim != 2:
        shape = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
        raise LegatoInputError(f"{what} must be a [N, D] tensor, got {shape}")
    return emb


def _check_labels(labels: Tensor, n: int, num_classes: int) -> Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != n or labels.is_floating_point():
        got = f"{labels.dtype} {tuple(labels.shape)}"
        raise LegatoInputError(f"labels must be an integer [N] tensor with N={n}, got {got}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise LegatoInputError(f"labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    return labels.long()


def class_centroids(embeddings: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Per-class mean embedding, L2-normalised: ``[num_classes, D]``; a class without rows raises."""
    embeddings = _check_embeddings(embeddings).float()
    labels = _check_labels(labels, embeddings.shape[0], num_classes).to(embeddings.device)
    counts = torch.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise LegatoInputError(f"class_centroids: no embeddings for classes {missing}")
    sums = torch.zeros(num_classes, embeddings.shape[1], device=embeddings.device).index_add_(0, labels, embeddings)
    return F.normalize(sums / counts[:, None], dim=1)


class _MeanMetric(Metric):
    """Mean of per-row values, as a (sum, count) pair of float64 sum states."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _add(self, values: Tensor) -> None:
        self.total += values.detach().to(self.total.device, torch.float64).sum()
        self.count += values.numel()

    def compute(self) -> Tensor:
        return self.total / self.count if self.count > 0 else torch.tensor(float("nan"), dtype=torch.float64)


def different_people_cosine(centroids: Tensor) -> float:
    """Mean cosine between the centroids of two different classes (NaN with fewer than two classes)."""
    unit = F.normalize(centroids.float(), dim=1)
    k = unit.shape[0]
    if k < 2:
        return float("nan")
    sims = unit @ unit.T
    return float((sims.sum() - sims.diagonal().sum()) / (k * (k - 1)))


class MeanValue(_MeanMetric):
    """Mean of the per-row values given to ``update``."""

    def update(self, values: Tensor) -> None:
        self._add(torch.as_tensor(values).flatten())


class PairedCosineSimilarity(_MeanMetric):
    """Mean cosine similarity of row pairs ``(before[i], after[i])`` (same seed at strength 0 and s)."""

    def update(self, before_emb: Tensor, after_emb: Tensor) -> None:
        before_emb, after_emb = _check_embeddings(before_emb, "before_emb"), _check_embeddings(after_emb, "after_emb")
        if before_emb.shape != after_emb.shape:
            shapes = f"{tuple(before_emb.shape)} vs {tuple(after_emb.shape)}"
            raise LegatoInputError(f"before/after embeddings differ in shape: {shapes}")
        self._add(F.cosine_similarity(before_emb.float(), after_emb.float(), dim=1))


class _CentroidMetric(_MeanMetric):
    def __init__(self, centroids: Tensor, **kwargs) -> None:
        super().__init__(**kwargs)
        centroids = _check_embeddings(centroids, "centroids")
        self.register_buffer("centroids", F.normalize(centroids.detach().float(), dim=1), persistent=False)

    def _inputs(self, emb: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        emb = _check_embeddings(emb)
        if emb.shape[1] != self.centroids.shape[1]:
            raise LegatoInputError(f"embedding dim {emb.shape[1]} != centroid dim {self.centroids.shape[1]}")
        labels = _check_labels(labels, emb.shape[0], self.centroids.shape[0])
        return F.normalize(emb.float(), dim=1).to(self.centroids.device), labels.to(self.centroids.device)


class CentroidAccuracy(_CentroidMetric):
    """Share of rows whose nearest centroid (cosine) is their label; ``centroids`` is ``[K, D]``."""

    def update(self, emb: Tensor, labels: Tensor) -> None:
        emb, labels = self._inputs(emb, labels)
        self._add((emb @ self.centroids.T).argmax(dim=1).eq(labels))


class CentroidSimilarity(_CentroidMetric):
    """Mean cosine similarity between each row and the centroid of its label."""

    def update(self, emb: Tensor, labels: Tensor) -> None:
        emb, labels = self._inputs(emb, labels)
        self._add((emb * self.centroids[labels]).sum(dim=1))
