"""Fréchet distance between Gaussian fits of two feature sets, over any features or Inception (FID).

The metric keeps per set the count, the sum and the sum of outer products in float64 (sum-reduced,
so exact under DDP); ``compute()`` needs at least two vectors per set and returns NaN otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import lapack
from torch import Tensor
from torchmetrics import Metric

from legato_pl.errors import LegatoInputError
from legato_pl.metrics.encoders import InceptionFeatures


def _psd_factor(sigma: np.ndarray) -> np.ndarray:
    """``L [D, r]`` with ``sigma = L L^T`` up to rounding: rank-revealing pivoted Cholesky (LAPACK ``dpstrf``)."""
    if not np.any(np.diag(sigma) > 0):
        return np.zeros((sigma.shape[0], 0))
    factor, piv, rank, info = lapack.dpstrf(sigma, lower=1, tol=-1.0)  # tol: D * eps * max diag
    if info < 0:
        raise RuntimeError(f"LAPACK dpstrf failed (info={info})")
    out = np.empty((sigma.shape[0], rank))
    out[piv - 1] = np.tril(factor[:, :rank])  # undo the pivoting: P^T sigma P = L L^T
    return out


def _sqrt_trace_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr sqrt(sigma1^1/2 sigma2 sigma1^1/2)`` for PSD matrices: the sum of singular values of ``L1^T L2``.

    With ``sigma_i = L_i L_i^T``, the non-zero eigenvalues of ``sigma1 sigma2`` are the squared singular
    values of ``L1^T L2`` (``r1 x r2``), so no square root of a (near-)singular matrix is ever taken:
    stable and cheap for the rank-deficient covariances of small sample sets.
    """
    l1, l2 = _psd_factor(sigma1), _psd_factor(sigma2)
    if l1.shape[1] == 0 or l2.shape[1] == 0:
        return 0.0
    return float(np.linalg.svd(l1.T @ l2, compute_uv=False).sum())


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """``||mu1 - mu2||^2 + tr(s1 + s2 - 2 (s1^1/2 s2 s1^1/2)^1/2)`` in float64, clamped at 0.

    Exact for singular covariances (fewer samples than dimensions), see ``_sqrt_trace_product``.
    """
    mu1, mu2, s1, s2 = (torch.as_tensor(t).detach().to("cpu", torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    d = mu1.shape[-1] if mu1.ndim == 1 else -1
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise LegatoInputError(
            f"frechet_distance needs mu [D] and sigma [D, D], got {tuple(mu1.shape)}, {tuple(s1.shape)}, "
            f"{tuple(mu2.shape)}, {tuple(s2.shape)}"
        )
    s1, s2 = ((s + s.T).numpy() / 2 for s in (s1, s2))
    dist = float((mu1 - mu2).square().sum()) + np.trace(s1) + np.trace(s2) - 2 * _sqrt_trace_product(s1, s2)
    return max(float(dist), 0.0)


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (float64) of ``features [N, D]``, N >= 2."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise LegatoInputError(f"feature_statistics needs [N, D] features with N >= 2, got {tuple(features.shape)}")
    x = features.detach().to(torch.float64)
    return x.mean(dim=0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


class FrechetDistance(Metric):
    """Fréchet distance between the "real" and the "fake" feature sets (``update(features, real)``).

    With ``reference=(mu, sigma)`` the real side is fixed (e.g. precomputed real-photo statistics)
    and only fake features may be added.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, num_features: int, reference: tuple[Tensor, Tensor] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_features = int(num_features)
        d = self.num_features
        for side in ("real", "fake"):
            self.add_state(f"{side}_n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_sum", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
        self.has_reference = reference is not None
        if reference is not None:
            mu, sigma = (torch.as_tensor(t, dtype=torch.float64) for t in reference)
            if mu.shape != (d,) or sigma.shape != (d, d):
                got = f"{tuple(mu.shape)}, {tuple(sigma.shape)}"
                raise LegatoInputError(f"reference must be (mu [{d}], sigma [{d}, {d}]), got {got}")
            self.register_buffer("ref_mu", mu.clone(), persistent=False)
            self.register_buffer("ref_sigma", sigma.clone(), persistent=False)

    def update(self, features: Tensor, real: bool) -> None:
        if not isinstance(features, Tensor) or features.ndim != 2 or features.shape[1] != self.num_features:
            shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
            raise LegatoInputError(f"features must be [N, {self.num_features}], got {shape}")
        if real and self.has_reference:
            raise LegatoInputError("this FrechetDistance has a fixed reference; update it with real=False only")
        side = "real" if real else "fake"
        x = features.detach().to(self.real_sum.device, torch.float64)
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + x.shape[0])
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + x.sum(dim=0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + x.T @ x)

    def _moments(self, side: str) -> tuple[Tensor, Tensor] | None:
        n, total, outer = getattr(self, f"{side}_n"), getattr(self, f"{side}_sum"), getattr(self, f"{side}_outer")
        if n < 2:
            return None
        mu = total / n
        return mu, (outer - n * torch.outer(mu, mu)) / (n - 1)

    def compute(self) -> Tensor:
        real = (self.ref_mu, self.ref_sigma) if self.has_reference else self._moments("real")
        fake = self._moments("fake")
        if real is None or fake is None:
            return torch.tensor(float("nan"), dtype=torch.float64)
        return torch.tensor(frechet_distance(*real, *fake), dtype=torch.float64)


class FID(FrechetDistance):
    """Fréchet Inception distance: ``update(images in [-1, 1], real)`` through :class:`InceptionFeatures`."""

    def __init__(self, reference: tuple[Tensor, Tensor] | None = None, **kwargs) -> None:
        super().__init__(InceptionFeatures.num_features, reference=reference, **kwargs)
        self.inception = InceptionFeatures()

    def update(self, images: Tensor, real: bool) -> None:  # type: ignore[override]
        super().update(self.inception(images), real)


def frechet_inception_distance(real_images: Tensor, fake_images: Tensor) -> float:
    """One-shot FID between two image batches ``[N, 3, H, W]`` in [-1, 1] (N >= 2 each)."""
    metric = FID()
    metric.update(real_images, real=True)
    metric.update(fake_images, real=False)
    return float(metric.compute())
