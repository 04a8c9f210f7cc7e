"""Seeded batches: global batch ``g`` of a fit is a pure function of ``(seed, g)``.

A fit resumed from a checkpoint (after a crash or SIGKILL) therefore sees exactly the batches an
uninterrupted fit would, which makes resumed adapters equal to uninterrupted ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Dataset, default_collate
from torch.utils.data.distributed import DistributedSampler


class SeededBatches(Dataset):
    """Map-style dataset: item ``(g, rank, world)`` is rows ``rank::world`` of global batch ``g``.

    Each epoch is a permutation seeded by ``(seed, epoch)``; horizontal flips are seeded by ``g``.
    ``batch_size`` is the global batch, so W processes see exactly the rows one process would.
    Use with ``DataLoader(batch_size=None, sampler=GlobalStepSampler(...))``.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0, hflip: bool = False):
        self.dataset, self.batch_size, self.seed, self.hflip = dataset, batch_size, seed, hflip
        n = len(dataset)
        self.per_epoch = n // batch_size if n >= batch_size else 1
        self._perm: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.per_epoch

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(len(self.dataset), generator=g))
        return self._perm[1]

    def __getitem__(self, item: int | tuple[int, int, int]):
        g, rank, world = (item, 0, 1) if isinstance(item, int) else item
        epoch, j = divmod(g, self.per_epoch)
        index = self._permutation(epoch)[j * self.batch_size : (j + 1) * self.batch_size]
        batch = default_collate([self.dataset[int(i)] for i in index])
        if self.hflip:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * g + 1)
            batch = [flip_images(x, gen) if x.dim() == 4 else x for x in batch]
        return [x[rank::world] for x in batch]


class GlobalStepSampler(DistributedSampler):
    """Yields ``(global batch, rank, world)`` from where the fit stands (batch ``s`` at step ``s``).
    A ``DistributedSampler`` so that Lightning keeps it under DDP instead of reshuffling."""

    def __init__(self, batches_per_epoch: int, position: Callable[[], tuple[int, int, int]]):
        # deliberately not calling DistributedSampler.__init__: rank and world size come from `position`
        self.batches_per_epoch = batches_per_epoch
        self.position = position  # () -> (global_step, rank, world_size)
        self.epoch = 0

    def __iter__(self) -> Iterator[int]:
        step, rank, world = self.position()
        return iter((g, rank, world) for g in range(step, step + self.batches_per_epoch))

    def __len__(self) -> int:
        return self.batches_per_epoch


def flip_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
