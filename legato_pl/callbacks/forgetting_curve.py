"""ForgettingCurve: sweep the method's strength (the ODE steps for ODE adapters), compute metrics, log."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid
from typing_extensions import override

from legato_pl.callbacks.judge import check_judge_inputs, fit_people, identity_judge
from legato_pl.errors import LegatoInputError
from legato_pl.evaluation import SamplingSettings, StrengthCurve, strength_curve
from legato_pl.metrics import UnlearningMetrics
from legato_pl.metrics.encoders import ENCODER_NAMES


class ForgettingCurve(pl.Callback):
    """Every ``every_n_val_epochs`` validation epochs (sanity check excluded), every ``every_n_steps``
    training steps (0 disables either) and at the end of fit, sample the forget identities and
    ``num_retain`` retain identities at each strength of the method's grid (the ODE grid for ODE
    adapters; 0, .25, ..., 1 for the others) from fixed seeds, compute the
    evaluation metrics against the held-out real photos, and log:

    - ``curve/<metric>/strength_<s>`` scalars, a ``curve/figure`` of every metric against strength,
      a ``curve/samples`` grid (rows = strength, columns = identities);
    - ``curve.csv`` in the run directory (one row per evaluation and strength).

    Under DDP every rank samples a shard of the rows (global seeds, so the reduced metrics equal a
    single-process sweep) and the metrics are reduced across ranks; rank 0 logs and writes.
    """

    def __init__(
        self,
        every_n_steps: int = 0,
        num_retain: int = 3,
        per_identity: int = 4,
        encoder: str = "dlib",
        guidance_scale: float = 3.0,
        num_inference_steps: int = 25,
        seed: int = 0,
        face_rate: bool = False,
        strengths: list[float] | None = None,
        every_n_val_epochs: int = 0,
    ):
        if every_n_steps < 0 or every_n_val_epochs < 0:
            raise LegatoInputError("every_n_steps and every_n_val_epochs must be >= 0 (0 disables)")
        if encoder not in ENCODER_NAMES:
            raise LegatoInputError(f"ForgettingCurve: unknown encoder {encoder!r}; valid: {', '.join(ENCODER_NAMES)}")
        if num_retain < 0 or per_identity < 1:
            raise LegatoInputError("ForgettingCurve: num_retain must be >= 0 and per_identity >= 1")
        self.every_n_steps = every_n_steps
        self.every_n_val_epochs = every_n_val_epochs
        self._val_epochs = 0
        self._last_step: int | None = None
        self.num_retain = num_retain
        self.settings = SamplingSettings(per_identity, guidance_scale, num_inference_steps, seed)
        self.encoder_name = encoder
        self.face_rate = face_rate
        self.strengths = strengths
        self._metrics: UnlearningMetrics | None = None
        self.last: StrengthCurve | None = None

    def _setup_metrics(self, trainer: pl.Trainer, module: pl.LightningModule) -> tuple[torch.Tensor, list[int]]:
        forget, retain = fit_people(trainer, module)
        if self._metrics is None:
            self._metrics = identity_judge(trainer, module, self.encoder_name, self.face_rate)
        people = forget + retain[: self.num_retain]
        labels = torch.tensor(people).repeat_interleave(self.settings.per_identity)
        return labels, people

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check everything the sweep needs before training starts (not at the first sweep, after it)."""
        check_judge_inputs(trainer, self.encoder_name, "ForgettingCurve")

    def run(self, trainer: pl.Trainer, module: pl.LightningModule) -> StrengthCurve:
        labels, people = self._setup_metrics(trainer, module)
        # each rank samples rows rank::world of the global set with their global seeds, so the reduced
        # metrics equal a single-process sweep
        rows = torch.arange(trainer.global_rank, len(labels), trainer.world_size)
        seeds = (self.settings.seed + rows).tolist()
        was_training = module.training
        module.eval()
        curve = strength_curve(module.unet, module.scheduler, module.method, labels[rows], module.null_class,
                               self._metrics, self.strengths, self.settings, seeds=seeds,
                               conditioning=module.conditioning)
        module.train(was_training)
        self.last, self._last_step = curve, trainer.global_step
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective under DDP: every rank calls it
        self._log(trainer, curve, people, run_dir)
        return curve

    @rank_zero_only
    def _log(self, trainer: pl.Trainer, curve: StrengthCurve, people: list[int], run_dir: Path) -> None:
        step = trainer.global_step
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "curve.csv"
        keys = list(curve.rows[0])
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", *keys])
            if new:
                writer.writeheader()
            for row in curve.rows:
                writer.writerow({"step": step, **row})
        for logger in trainer.loggers:
            logger.log_metrics({f"curve/{k}/strength_{row['strength']:.2f}": v
                                for row in curve.rows for k, v in row.items() if k != "strength"}, step=step)
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("curve/figure", curve_figure(curve.rows), step)
                logger.experiment.add_image("curve/samples", sample_grid(curve, people), step)

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.run(trainer, pl_module)

    @override
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not self.every_n_val_epochs:
            return
        self._val_epochs += 1
        if self._val_epochs % self.every_n_val_epochs == 0:
            self.run(trainer, pl_module)

    @override
    def on_train_end(self, trainer, pl_module) -> None:
        if self._last_step != trainer.global_step:  # not already evaluated at this step (last validation)
            self.run(trainer, pl_module)


def sample_grid(curve: StrengthCurve, people: list[int], per_person: int = 2) -> torch.Tensor:
    """Rows = strengths; columns = ``per_person`` samples of each identity (that this rank sampled)."""
    cols = []
    for images in curve.samples.values():
        row = [images[curve.labels == c][:per_person] for c in people]
        cols.append(torch.cat([r for r in row if len(r)]))
    return make_grid(torch.cat(cols) * 0.5 + 0.5, nrow=len(cols[0])).clamp(0, 1)


def curve_figure(rows: list[dict[str, float]]):
    """A matplotlib figure of every metric against strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in rows[0] if k != "strength"]
    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 2.4), squeeze=False)
    s = [r["strength"] for r in rows]
    for ax, key in zip(axes[0], keys):
        ax.plot(s, [r.get(key, float("nan")) for r in rows], marker="o")
        ax.set_title(key, fontsize=8)
        ax.set_xlabel("strength", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig
