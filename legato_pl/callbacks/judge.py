"""The identity judge a callback scores a fit's samples with, built from the fit's own data."""

from __future__ import annotations

import lightning.pytorch as pl

from legato_pl.errors import LegatoInputError
from legato_pl.metrics import UnlearningMetrics, load_encoder
from legato_pl.metrics.encoders import ENCODER_NAMES, IdentityEncoder


def check_judge_inputs(trainer: pl.Trainer, encoder: str | IdentityEncoder, who: str) -> None:
    """Before training: the datamodule has what a judge needs and the encoder loads (a missing model file fails here)."""
    dm = trainer.datamodule
    if dm is None or not all(hasattr(dm, k) for k in ("forget", "retain", "class_names", "data")):
        raise LegatoInputError(f"{who} needs an IdentityDataModule (forget/retain names, held-out photos)")
    if isinstance(encoder, str):
        if encoder not in ENCODER_NAMES:
            raise LegatoInputError(f"{who}: unknown encoder {encoder!r}; valid: {', '.join(ENCODER_NAMES)}")
        load_encoder(encoder)


def fit_people(trainer: pl.Trainer, module: pl.LightningModule) -> tuple[list[int], list[int]]:
    """The fit's forget and retain people as the base model's class indices."""
    dm = trainer.datamodule
    to_base = {name: int(module.label_map[i]) for i, name in enumerate(dm.class_names)}
    return [to_base[n] for n in dm.forget], [to_base[n] for n in dm.retain]


def identity_judge(trainer: pl.Trainer, module: pl.LightningModule, encoder: str | IdentityEncoder,
                   face_rate: bool = False) -> UnlearningMetrics:
    """``UnlearningMetrics`` over the held-out photos of the fit's people (base class indices)."""
    dm = trainer.datamodule
    to_base = {name: int(module.label_map[i]) for i, name in enumerate(dm.class_names)}
    real = {to_base[n]: images for n, images in dm.data.heldout.items() if len(images)}
    missing = [n for n in dm.forget if to_base[n] not in real]
    if missing:
        raise LegatoInputError(f"forget identity {missing[0]!r} has no held-out photos to judge samples against "
                               "(set data heldout_fraction > 0)")
    judge = load_encoder(encoder) if isinstance(encoder, str) else encoder
    # on the module's device: DDP all-gathers metric states where the module lives (NCCL refuses CPU tensors)
    return UnlearningMetrics(judge, real, [to_base[n] for n in dm.forget], face_rate=face_rate).to(module.device)
