"""StopWhenForgotten: end a fit once the forgotten people are gone from fixed-seed samples; keep the best state."""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from legato_pl.callbacks.judge import check_judge_inputs, fit_people, identity_judge
from legato_pl.errors import LegatoInputError
from legato_pl.metrics.encoders import IdentityEncoder
from legato_pl.metrics.faces import FaceRate
from legato_pl.sampling import sample


class StopWhenForgotten(Callback):
    """Stop the fit once the forget people are forgotten to a stated threshold, and keep the best state.

    Every ``every_n_steps`` training steps, ``num_samples`` samples of the forget people (cycled over them; at least
    ``min_samples_per_person`` each when set, so a check of many people is not thinner per person) are drawn at the
    method's strength from fixed seeds (their teacher's versions, same seeds, are drawn once: the base alone
    for the people a stacked request holds to it, ``retain_teacher``) and scored by the identity judge against the
    held-out real photos:

    - ``accuracy``: share still identified as the forgotten person (nearest real-photo centroid);
    - ``moved``: share whose identity cosine to its base version is at or below the cosine between two
      different people's centroids (the sample changed as much as one person differs from another).

    With ``max_retain_drift`` set, ``num_retain_samples`` samples of the other people (cycled over them, fixed
    seeds) are drawn too:

    - ``retain_drift``: their mean identity distance to their base versions (1 - cosine), as a share of the
      distance between two different people (1 - the different-people cosine): 0 is unchanged, 1 is "became
      someone else". Early in a fit the push away from the person disturbs everyone; the retain term undoes it
      over later steps, so stopping at the first forgotten check can leave the others worse than a longer fit.

    With ``min_face_rate`` set:

    - ``face_rate``: share of the forget samples in which MTCNN finds a face (probability >= 0.9): a forgotten
      person should become a plausible stranger, not noise (a model retrained without them draws a face).

    The fit stops at the first check with ``accuracy <= max_accuracy``, ``moved >= min_moved`` and (when set)
    ``retain_drift <= max_retain_drift`` and ``face_rate >= min_face_rate``. Whatever ends the fit, the trainable
    state of the best check (lowest accuracy, then the others kept and faces drawn, then the highest ``rank_by``:
    most ``moved`` or most ``face_rate``, then the earliest) is restored before the artifact is written. Logs
    ``stop/accuracy``, ``stop/moved`` (and ``stop/retain_drift``, ``stop/face_rate``); :attr:`history` holds every
    check. Checkpoints carry the checks and the best state, so a resumed fit ends as an uninterrupted one does.
    """

    def __init__(
        self,
        every_n_steps: int = 20,
        num_samples: int = 16,
        max_accuracy: float = 0.0,
        min_moved: float = 0.75,
        encoder: str | IdentityEncoder = "dlib",
        guidance_scale: float = 3.0,
        num_inference_steps: int = 20,
        seed: int = 10_000,
        restore_best: bool = True,
        max_retain_drift: float | None = None,
        num_retain_samples: int = 40,
        min_face_rate: float | None = None,
        rank_by: Literal["moved", "face_rate"] = "moved",
        min_samples_per_person: int = 0,
    ):
        if every_n_steps < 1 or num_samples < 1 or num_inference_steps < 1:
            raise LegatoInputError("StopWhenForgotten: every_n_steps, num_samples and num_inference_steps must be >= 1")
        if min_samples_per_person < 0:
            raise LegatoInputError(f"StopWhenForgotten: min_samples_per_person must be >= 0, got {min_samples_per_person}")
        self.min_samples_per_person = min_samples_per_person
        if not 0.0 <= max_accuracy <= 1.0 or not 0.0 <= min_moved <= 1.0:
            raise LegatoInputError("StopWhenForgotten: max_accuracy and min_moved must be in [0, 1]")
        if max_retain_drift is not None and (max_retain_drift < 0 or num_retain_samples < 1):
            raise LegatoInputError("StopWhenForgotten: max_retain_drift must be >= 0 and num_retain_samples >= 1")
        self.every_n_steps, self.num_samples = every_n_steps, num_samples
        self.max_accuracy, self.min_moved = max_accuracy, min_moved
        self.encoder, self.guidance_scale, self.num_inference_steps = encoder, guidance_scale, num_inference_steps
        self.seed, self.restore_best = seed, restore_best
        if min_face_rate is not None and not 0.0 <= min_face_rate <= 1.0:
            raise LegatoInputError("StopWhenForgotten: min_face_rate must be in [0, 1]")
        if rank_by not in ("moved", "face_rate") or (rank_by == "face_rate" and min_face_rate is None):
            raise LegatoInputError(f"StopWhenForgotten: rank_by must be 'moved' or 'face_rate' (which needs "
                                   f"min_face_rate), got {rank_by!r}")
        self.rank_by = rank_by
        self.max_retain_drift, self.num_retain_samples = max_retain_drift, num_retain_samples
        self.min_face_rate = min_face_rate
        self._faces = FaceRate() if min_face_rate is not None else None
        self.history: list[dict[str, float]] = []
        self.stopped_at: int | None = None
        self._best: tuple[tuple, list[torch.Tensor]] | None = None
        self._judge = self._labels = self._before = None

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        check_judge_inputs(trainer, self.encoder, "StopWhenForgotten")

    def _sample(self, module: LightningModule, unet: torch.nn.Module) -> torch.Tensor:
        return sample(unet, module.scheduler, self._labels, null_class=module.null_class,
                      conditioning=module.conditioning, guidance_scale=self.guidance_scale,
                      num_inference_steps=self.num_inference_steps,
                      seeds=list(range(self.seed, self.seed + len(self._labels))))

    def _check_labels(self, trainer: Trainer, module: LightningModule) -> torch.Tensor:
        """The forget people cycled to ``num_samples`` rows (at least ``min_samples_per_person`` each), then (when
        judged) the others to ``num_retain_samples``."""
        forget, retain = fit_people(trainer, module)
        n = max(self.num_samples, self.min_samples_per_person * len(forget))
        labels = [torch.tensor(forget).repeat(n // len(forget) + 1)[:n]]
        if self.max_retain_drift is not None:
            if not retain:
                raise LegatoInputError("StopWhenForgotten: max_retain_drift needs people to retain")
            labels.append(torch.tensor(retain).repeat(self.num_retain_samples // len(retain) + 1)
                          [: self.num_retain_samples])
        return torch.cat(labels)

    def check(self, trainer: Trainer, module: LightningModule, log: bool = True) -> dict[str, float]:
        """Score the current state; remember it if it is the best so far."""
        was_training = module.training
        module.eval()
        if self._judge is None:
            self._judge, self._labels = identity_judge(trainer, module, self.encoder), self._check_labels(trainer, module)
            with module.method.teacher() as teacher:
                self._before = self._sample(module, teacher)
            anchored = module.base_anchored(self._labels)
            if anchored is not None and anchored.any():  # the people held to the base alone, as it draws them
                with module.base_unet() as base:
                    from_base = self._sample(module, base)
                self._before = torch.where(anchored.view(-1, 1, 1, 1).to(from_base.device), from_base, self._before)
        after = self._sample(module, module.unet)
        module.train(was_training)
        rows = self._judge.update(self._before, after, self._labels)
        self._judge.reset()
        forget = rows["forget"]
        result = {"step": trainer.global_step, "accuracy": float(rows["correct"][forget].mean()),
                  "moved": float(rows["moved"][forget].mean())}
        if self.max_retain_drift is not None:
            drift = (1 - rows["id_cos"][~forget]).mean() / (1 - self._judge.different_people_cosine)
            result["retain_drift"] = float(drift)
        if self._faces is not None:
            result["face_rate"] = float((self._faces.detect(after[forget.to(after.device)]) >= self._faces.min_prob)
                                        .float().mean())
        self.history.append(result)
        key = self.rank(result)
        if self.restore_best and (self._best is None or key < self._best[0]):
            self._best = (key, [p.detach().clone() for p in module.method.trainable_parameters()])
        if log:
            module.log_dict({f"stop/{k}": v for k, v in result.items() if k != "step"})
        return result

    def rank(self, result: dict[str, float]) -> tuple:
        """Sort key of a check (lower is better): accuracy, then kept, then the most ``rank_by``, then the earliest."""
        return result["accuracy"], not self.kept(result), -result[self.rank_by], result["step"]

    def kept(self, result: dict[str, float]) -> bool:
        """The other people stayed themselves and the forgotten became faces (each always true when not judged)."""
        return ((self.max_retain_drift is None or result["retain_drift"] <= self.max_retain_drift)
                and (self.min_face_rate is None or result["face_rate"] >= self.min_face_rate))

    def forgotten(self, result: dict[str, float]) -> bool:
        """The stopping rule: the people are gone and (when judged) the others are kept."""
        return result["accuracy"] <= self.max_accuracy and result["moved"] >= self.min_moved and self.kept(result)

    @override
    def state_dict(self) -> dict:
        """The checks so far and the best state: a fit resumed from a checkpoint keeps choosing among all of them."""
        best = None if self._best is None else {"key": list(self._best[0]), "params": self._best[1]}
        return {"history": self.history, "stopped_at": self.stopped_at, "best": best}

    @override
    def load_state_dict(self, state_dict: dict) -> None:
        self.history, self.stopped_at = list(state_dict["history"]), state_dict["stopped_at"]
        best = state_dict["best"]
        self._best = None if best is None else (tuple(best["key"]), list(best["params"]))

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.stopped_at is not None:  # resumed from a checkpoint of a fit that had already stopped
            trainer.should_stop = True

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        result = self.check(trainer, pl_module)
        # every rank scores the same seeds; rank 0's verdict is the one every rank follows
        if trainer.strategy.broadcast(self.forgotten(result), src=0):
            self.stopped_at = trainer.global_step
            trainer.should_stop = True
            rank_zero_info(f"StopWhenForgotten: forgotten at step {self.stopped_at} ({self._describe(result)}); stopping")

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.restore_best or self._best is None:
            return
        if self.stopped_at is None and trainer.global_step % self.every_n_steps:
            self.check(trainer, pl_module, log=False)  # the last state is a candidate too
        (*_, step), best = self._best
        with torch.no_grad():
            for p, value in zip(pl_module.method.trainable_parameters(), best):
                p.copy_(value)
        result = next(r for r in self.history if r["step"] == step)
        rank_zero_info(f"StopWhenForgotten: keeping the state of step {step} ({self._describe(result)})")

    def _describe(self, result: dict[str, float]) -> str:
        text = f"accuracy {result['accuracy']:.2f} (max {self.max_accuracy}), moved {result['moved']:.2f} (min {self.min_moved})"
        if "retain_drift" in result:
            text += f", others' drift {result['retain_drift']:.3f} (max {self.max_retain_drift})"
        if "face_rate" in result:
            text += f", face rate {result['face_rate']:.2f} (min {self.min_face_rate})"
        return text
