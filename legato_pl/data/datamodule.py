"""LightningDataModules over identity sets: pretraining (all identities) and unlearning (forget/retain)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from legato_pl.conditioning.base import check_names
from legato_pl.data.batches import GlobalStepSampler, SeededBatches
from legato_pl.data.folder import load_images, scan_identity_folder, split_heldout
from legato_pl.data.synthetic import synthetic_identities
from legato_pl.errors import LegatoInputError


class IdentityImages:
    """In-memory train and held-out images per identity, from a folder tree or the embedded synthetic set."""

    def __init__(
        self,
        root: str | None,
        image_size: int,
        heldout_fraction: float,
        identities: list[str] | None = None,
        num_synthetic_identities: int = 8,
        synthetic_images_per_identity: int = 32,
        seed: int = 0,
    ):
        if image_size <= 0:
            raise LegatoInputError(f"image_size must be positive, got {image_size}")
        if not 0.0 <= heldout_fraction < 1.0:
            raise LegatoInputError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
        self.train: dict[str, Tensor] = {}
        self.heldout: dict[str, Tensor] = {}
        if root is None:
            n = synthetic_images_per_identity
            pool = synthetic_identities(num_synthetic_identities, n, image_size, seed)
            names = self._select(sorted(pool), identities, "the embedded synthetic set")
            n_held = round(n * heldout_fraction) if n > 1 else 0
            for name in names:
                self.train[name], self.heldout[name] = pool[name][: n - n_held], pool[name][n - n_held :]
        else:
            files = scan_identity_folder(root)
            for name in self._select(sorted(files), identities, str(root)):
                train, held = split_heldout(files[name], heldout_fraction)
                self.train[name] = load_images(train, image_size)
                self.heldout[name] = load_images(held, image_size) if held else torch.empty(0, 3, image_size, image_size)

    @classmethod
    def from_tensors(cls, train: dict[str, Tensor], heldout: dict[str, Tensor]) -> IdentityImages:
        """Images already in memory (e.g. a model's own generations), ``{name: [N, 3, H, W]}`` in [-1, 1]."""
        data = cls.__new__(cls)
        data.train, data.heldout = dict(train), dict(heldout)
        return data

    @staticmethod
    def _select(available: list[str], wanted: list[str] | None, where: str) -> list[str]:
        if wanted is None:
            return available
        check_names(wanted, available, where)
        return sorted(wanted)

    @property
    def names(self) -> list[str]:
        return list(self.train)


class _IdentityDataModule(pl.LightningDataModule):
    def __init__(
        self,
        root: str | None = None,
        image_size: int = 32,
        batch_size: int = 16,  # global: under DDP each of W processes gets batch_size / W rows
        heldout_fraction: float = 0.2,
        identities: list[str] | None = None,
        num_synthetic_identities: int = 8,
        synthetic_images_per_identity: int = 32,
        hflip: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.root = None if root is None else str(Path(root).expanduser())
        self.image_size = image_size
        self.batch_size = batch_size
        self.data: IdentityImages | None = None

    def setup(self, stage: str | None = None) -> None:
        world = getattr(self.trainer, "world_size", 1) if self.trainer is not None else 1
        if self.batch_size % world:
            raise LegatoInputError(f"batch_size {self.batch_size} is the global batch: it must divide evenly over the "
                                   f"{world} processes (each gets batch_size / {world} rows)")
        if self.data is not None:
            return
        h = self.hparams
        self.data = IdentityImages(
            self.root, h.image_size, h.heldout_fraction, h.identities, h.num_synthetic_identities,
            h.synthetic_images_per_identity, h.seed,
        )

    @property
    def class_names(self) -> list[str]:
        """Identity names in the order of the labels this module emits."""
        if self.data is None:
            self.setup()
        return self.data.names

    def _loader(self, dataset: Dataset, validation: bool = False) -> DataLoader:
        """Batches seeded by their global number, continuing where a resumed fit left off
        (validation: the same unflipped batches from the first, every time)."""
        batches = SeededBatches(dataset, self.batch_size, self.hparams.seed, self.hparams.hflip and not validation)
        sampler = GlobalStepSampler(batches.per_epoch, self._start_position if validation else self._position)
        return DataLoader(batches, batch_size=None, sampler=sampler, num_workers=self.hparams.num_workers,
                          persistent_workers=self.hparams.num_workers > 0)

    def _position(self) -> tuple[int, int, int]:
        """(first global batch, rank, world): a batch per micro-batch, so accumulated ones differ."""
        trainer = self.trainer  # None outside a fit
        if trainer is None:
            return 0, 0, 1
        return trainer.global_step * trainer.accumulate_grad_batches, trainer.global_rank, trainer.world_size

    def _start_position(self) -> tuple[int, int, int]:
        _, rank, world = self._position()
        return 0, rank, world


class IdentityPretrainDataModule(_IdentityDataModule):
    """Batches ``{"images", "labels"}`` over all identities, for pretraining the class-conditional base.

    ``exclude``: people whose photos are left out while their classes stay (the model has a label for them that
    never sees data): the unlearning field's gold standard, a model retrained without the person.
    """

    def __init__(self, *args, exclude: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.exclude = list(exclude or [])

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        check_names(self.exclude, self.data.names, f"exclude (people of {self.root or 'the embedded set'})")
        if len(set(self.exclude)) == len(self.data.names):
            raise LegatoInputError("exclude names every identity: nothing left to train on")

    def train_dataloader(self) -> DataLoader:
        self.setup()
        kept = [(i, v) for i, (name, v) in enumerate(self.data.train.items()) if name not in self.exclude]
        images = torch.cat([v for _, v in kept])
        labels = torch.cat([torch.full((len(v),), i) for i, v in kept])
        return self._loader(TensorDataset(images, labels))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        return {"images": images, "labels": labels}


class ForgetRetainDataset(Dataset):
    """Item ``i`` pairs retain image ``i`` with forget image ``i mod n_forget`` (the small set cycles)."""

    def __init__(self, forget: tuple[Tensor, Tensor], retain: tuple[Tensor, Tensor]):
        self.forget, self.retain = forget, retain

    def __len__(self) -> int:
        return max(len(self.forget[0]), len(self.retain[0]))

    def __getitem__(self, i: int):
        f, r = i % len(self.forget[0]), i % len(self.retain[0])
        return self.forget[0][f], self.forget[1][f], self.retain[0][r], self.retain[1][r]


class IdentityDataModule(_IdentityDataModule):
    """Forget and retain batches every step: ``{"forget_images", "forget_labels", "retain_images", "retain_labels"}``.

    Validation batches have the same keys and come from the held-out photos (``heldout_fraction``).

    Labels index :attr:`class_names`; the model maps them to the base model's classes by name.
    """

    def __init__(self, forget: list[str] | str = "person_00", retain: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.forget = [forget] if isinstance(forget, str) else list(forget)
        self.retain = None if retain is None else list(retain)

    def setup(self, stage: str | None = None) -> None:
        # validated here, not in __init__, so the CLI reports the error itself (not wrapped by the parser)
        if not self.forget:
            raise LegatoInputError("forget must name at least one identity")
        overlap = sorted(set(self.forget) & set(self.retain or []))
        if overlap:
            raise LegatoInputError(f"identity {overlap[0]!r} is in both forget and retain")
        super().setup(stage)
        where = self.root or "the embedded synthetic set"
        check_names(self.forget, self.data.names, where)
        if self.retain is None:
            self.retain = [n for n in self.data.names if n not in self.forget]
        check_names(self.retain, self.data.names, where)
        if not self.retain:
            raise LegatoInputError("no retain identities: the data holds only the forget identities")

    def _stack(self, names: list[str], split: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        index = {n: i for i, n in enumerate(self.data.names)}
        images = torch.cat([split[n] for n in names])
        labels = torch.cat([torch.full((len(split[n]),), index[n]) for n in names])
        return images, labels

    def train_dataloader(self) -> DataLoader:
        self.setup()
        train = self.data.train
        return self._loader(ForgetRetainDataset(self._stack(self.forget, train), self._stack(self.retain, train)))

    def val_dataloader(self) -> DataLoader | list:
        """The held-out photos of the forget and retain identities (none held out: no validation)."""
        self.setup()
        held = self.data.heldout
        forget, retain = self._stack(self.forget, held), self._stack(self.retain, held)
        if not len(forget[0]) or not len(retain[0]):
            return []
        return self._loader(ForgetRetainDataset(forget, retain), validation=True)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        fi, fl, ri, rl = batch
        return {"forget_images": fi, "forget_labels": fl, "retain_images": ri, "retain_labels": rl}
