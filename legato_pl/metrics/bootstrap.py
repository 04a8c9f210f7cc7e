"""Confidence intervals over evaluation samples: bootstrap (any statistic) and Wilson (an accuracy)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def bootstrap_ci(
    statistic: Callable[[Tensor], float],
    num_rows: int,
    num_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    estimate: float | None = None,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(rows)`` over ``num_resamples`` resamples of row indices.

    ``statistic`` takes a LongTensor of row indices (with repeats) and returns a float, so one helper
    serves means of per-sample values and set statistics such as a Fréchet distance. ``estimate`` (the
    statistic on all rows) re-centres the resampled values on it: a set statistic is biased by the
    repeats a resample holds (a Fréchet distance grows with fewer distinct rows), so its raw percentile
    interval can miss the estimate altogether.
    """
    if num_rows < 1:
        return float("nan"), float("nan")
    gen = torch.Generator().manual_seed(seed)
    values = torch.tensor([statistic(torch.randint(num_rows, (num_rows,), generator=gen))
                           for _ in range(num_resamples)], dtype=torch.float64)
    if estimate is not None:
        values += estimate - values.mean()
    tail = (1.0 - level) / 2
    lo, hi = torch.quantile(values, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return lo, hi


def mean_ci(values: Tensor, **kwargs) -> tuple[float, float]:
    """Bootstrap interval of the mean of per-sample ``values``."""
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    return bootstrap_ci(lambda idx: float(values[idx].mean()), len(values), **kwargs)


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Two intervals share a point: their difference is reported as a tie."""
    return a[0] <= b[1] and b[0] <= a[1]


def proportion_ci(rate: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success ``rate`` observed on ``n`` samples (an accuracy with few samples)."""
    if n < 1:
        return float("nan"), float("nan")
    z = float(torch.special.ndtri(torch.tensor(0.5 + level / 2, dtype=torch.float64)))
    shrink = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / shrink
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / shrink
    return max(0.0, centre - half), min(1.0, centre + half)
