"""StopWhenForgotten: stops at the first check that meets the threshold, never before, and keeps that state."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import load_file

from legato_pl.callbacks import StopWhenForgotten
from legato_pl.data import IdentityDataModule
from legato_pl.errors import LegatoInputError
from legato_pl.methods import load_method
from legato_pl.models import UnlearningModule, load_base_model
from legato_pl.sampling import sample

from conftest import TINY_IDENTITIES, pixel_encoder

MAX_STEPS = 30


def fit(base_dir, out, lr: float, method: str = "full", callbacks: tuple = (), ckpt_path: str | None = None,
        module_args: dict | None = None, max_steps: int = MAX_STEPS,
        **stop) -> tuple[pl.Trainer, StopWhenForgotten, UnlearningModule]:
    """Forget person_01 of the drawing base (it draws the synthetic people), judged by their colours: the full
    fine-tune forgets fastest there; the callback only sees the method's trainable parameters."""
    torch.manual_seed(0)
    callback = StopWhenForgotten(encoder=pixel_encoder, every_n_steps=5, num_samples=8, num_inference_steps=10,
                                 **{"max_accuracy": 0.25, "min_moved": 0.0, **stop})
    module = UnlearningModule(str(base_dir), method=method, forget_target="negative", eta=2.0, lr=lr,
                              output_dir=str(out / "weights"), **module_args or {})
    dm = IdentityDataModule(forget="person_01", image_size=16, batch_size=8, identities=TINY_IDENTITIES,
                            num_synthetic_identities=4, synthetic_images_per_identity=16, heldout_fraction=0.25)
    trainer = pl.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=bool(callbacks),
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         callbacks=[callback, *callbacks])
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return trainer, callback, module


def test_stops_at_the_first_check_that_meets_the_threshold(drawing_base_dir, tmp_path):
    trainer, callback, module = fit(drawing_base_dir, tmp_path, lr=3e-3)
    assert callback.stopped_at is not None and trainer.global_step < MAX_STEPS, "never stopped"
    *before, last = callback.history
    assert last["step"] == callback.stopped_at == trainer.global_step
    assert last["accuracy"] <= 0.25, f"stopped before the threshold: {last}"
    assert not any(callback.forgotten(r) for r in before), "ran past a check that met the threshold"
    assert before and before[0]["accuracy"] > 0.25  # the first check did not meet it: there was something to forget
    # the artifact written at the end is the state that met the threshold: scored anew, it still does
    unet = load_base_model(drawing_base_dir).unet.eval()
    load_method(unet, tmp_path / "weights", strength=1.0)
    labels = torch.full((8,), TINY_IDENTITIES.index("person_01"))
    after = sample(unet, module.scheduler, labels, null_class=module.null_class, num_inference_steps=10,
                   seeds=list(range(callback.seed, callback.seed + 8)))
    rows = callback._judge.update(callback._before, after, labels)
    assert float(rows["correct"].mean()) <= 0.25


def test_does_not_stop_while_the_others_drift(drawing_base_dir, tmp_path):
    """The same fit with the others judged: forgetting alone no longer stops it while the others have moved."""
    trainer, callback, _ = fit(drawing_base_dir, tmp_path, lr=3e-3, max_retain_drift=1e-4, num_retain_samples=12)
    gone = [r for r in callback.history if r["accuracy"] <= 0.25 and r["moved"] >= 0.0]
    assert gone, "the person was never forgotten: nothing to hold the stop back"
    assert all(r["retain_drift"] > 1e-4 for r in gone)
    assert callback.stopped_at is None and trainer.global_step == MAX_STEPS, "stopped while the others had drifted"
    # a bound the others meet restores the plain rule: it stops at the first forgotten check
    _, loose, _ = fit(drawing_base_dir, tmp_path / "loose", lr=3e-3, max_retain_drift=10.0, num_retain_samples=12)
    assert loose.stopped_at == gone[0]["step"]


def test_does_not_stop_before_the_forgotten_become_faces(drawing_base_dir, tmp_path):
    """MTCNN finds no face in the 16 px drawings: with a face-rate bound the forgotten check never stops the fit."""
    trainer, callback, _ = fit(drawing_base_dir, tmp_path, lr=3e-3, min_face_rate=0.5)
    gone = [r for r in callback.history if r["accuracy"] <= 0.25]
    assert gone and all(r["face_rate"] < 0.5 for r in gone)
    assert callback.stopped_at is None and trainer.global_step == MAX_STEPS, "stopped on noise"
    _, loose, _ = fit(drawing_base_dir, tmp_path / "loose", lr=3e-3, min_face_rate=0.0)
    assert loose.stopped_at == gone[0]["step"]


def _checkpoints(dirpath) -> ModelCheckpoint:
    """The last state every 5 steps (every check's step), what a resumed fit starts from."""
    return ModelCheckpoint(dirpath=dirpath, save_last=True, save_top_k=0, every_n_train_steps=5)


class _Cut(Exception):
    pass


class _CutAfter(pl.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise _Cut


def test_a_resumed_fit_keeps_its_checks_and_best_state(drawing_base_dir, tmp_path):
    """A fit cut after step 17 and resumed from its step-15 checkpoint makes the checks, the choice of the best
    state and the artifact of the uninterrupted fit (the checks before the cut are in the checkpoint)."""
    stop = {"lr": 3e-3, "method": "legato", "max_retain_drift": 1e-4, "num_retain_samples": 12}  # never stops
    _, whole, _ = fit(drawing_base_dir, tmp_path / "whole", **stop)

    with pytest.raises(_Cut):
        fit(drawing_base_dir, tmp_path / "cut", callbacks=(_checkpoints(tmp_path / "ckpt"), _CutAfter(17)), **stop)
    assert not (tmp_path / "cut" / "weights").exists()
    _, resumed, _ = fit(drawing_base_dir, tmp_path / "cut", callbacks=(_checkpoints(tmp_path / "ckpt"),),
                        ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"), **stop)
    assert [r["step"] for r in resumed.history] == [r["step"] for r in whole.history] == list(range(5, 31, 5))
    assert all(r == pytest.approx(w, abs=1e-6) for r, w in zip(resumed.history, whole.history))
    assert resumed.stopped_at is None and whole.stopped_at is None
    best = min(whole.history, key=whole.rank)["step"]
    assert best < MAX_STEPS, "the last state is best: the test cannot tell a kept best state from the last one"
    a, b = (load_file(tmp_path / run / "weights" / "adapters.safetensors") for run in ("whole", "cut"))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_a_fit_resumed_after_its_stop_stays_stopped(drawing_base_dir, tmp_path):
    """Resumed from the checkpoint of the step it stopped at (the process cut before it ended), a fit trains no
    further and writes the same artifact."""
    trainer, first, _ = fit(drawing_base_dir, tmp_path / "first", lr=3e-3, callbacks=(_checkpoints(tmp_path / "ckpt"),))
    assert first.stopped_at is not None and first.stopped_at < MAX_STEPS, "never stopped: nothing to resume after"
    again, resumed, _ = fit(drawing_base_dir, tmp_path / "again", lr=3e-3, callbacks=(_checkpoints(tmp_path / "ckpt"),),
                            ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert again.global_step == first.stopped_at and resumed.history == first.history
    a, b = (load_file(tmp_path / run / "weights" / "unet" / "diffusion_pytorch_model.safetensors")
            for run in ("first", "again"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_does_not_stop_when_nothing_is_forgotten(drawing_base_dir, tmp_path):
    trainer, callback, module = fit(drawing_base_dir, tmp_path, lr=0.0)
    assert callback.stopped_at is None and trainer.global_step == MAX_STEPS
    assert len(callback.history) == MAX_STEPS // 5
    assert all(not callback.forgotten(r) for r in callback.history)
    assert callback.history[0]["accuracy"] > 0.25  # the base draws the person


def test_a_stacked_request_judges_the_others_against_its_retain_teacher(drawing_base_dir, tmp_path):
    """On a stack, the others' "before" samples are the stack's (``retain_teacher="stack"``) or the base's for
    everyone no earlier request forgot (``"base"``): an untrained request has drifted from the first, not the second."""
    from conftest import randomize_, tiny

    first = UnlearningModule(str(drawing_base_dir), method=tiny())
    randomize_(first.adapters, scale=0.2)
    first.method.save(tmp_path / "first", forget=["person_02"])
    stops = {}
    for teacher in ("stack", "base"):
        *_, stops[teacher], module = fit(drawing_base_dir, tmp_path / teacher, lr=0.0, method=tiny(), max_steps=5,
                                         module_args={"previous_adapters": [str(tmp_path / "first")],
                                                      "retain_teacher": teacher},
                                         max_retain_drift=1.0, num_retain_samples=6)
    assert stops["stack"].history[0]["retain_drift"] < 1e-6 < stops["base"].history[0]["retain_drift"]
    labels = stops["base"]._labels
    assert labels.tolist() == [1] * 8 + [0, 2, 3] * 2  # person_01 forgotten now; the others cycled
    earlier = labels == TINY_IDENTITIES.index("person_02")  # forgotten by the first request: still the stack's
    assert torch.equal(stops["base"]._before[earlier], stops["stack"]._before[earlier])
    assert not torch.equal(stops["base"]._before[~earlier], stops["stack"]._before[~earlier])


@pytest.mark.parametrize("bad", [{"every_n_steps": 0}, {"max_accuracy": 1.5}, {"min_moved": -0.1},
                                 {"num_samples": 0}, {"max_retain_drift": -0.1},
                                 {"max_retain_drift": 0.1, "num_retain_samples": 0}, {"min_face_rate": 1.5},
                                 {"rank_by": "faces"}, {"rank_by": "face_rate"}, {"min_samples_per_person": -1}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(LegatoInputError, match="StopWhenForgotten"):
        StopWhenForgotten(**bad)


def test_rank_by_chooses_which_kept_state_is_best():
    """Among checks that identify nobody and keep the others, ``rank_by`` decides: most moved or most faces."""
    moved = {"step": 75, "accuracy": 0.0, "moved": 0.6, "face_rate": 0.6, "retain_drift": 0.02}
    faces = {"step": 300, "accuracy": 0.0, "moved": 0.3, "face_rate": 0.9, "retain_drift": 0.01}
    identified = {**faces, "step": 25, "accuracy": 0.03, "face_rate": 1.0}
    checks = [identified, moved, faces]
    by_moved = StopWhenForgotten(min_face_rate=0.5, max_retain_drift=0.05)
    by_faces = StopWhenForgotten(min_face_rate=0.5, max_retain_drift=0.05, rank_by="face_rate")
    assert min(checks, key=by_moved.rank) is moved
    assert min(checks, key=by_faces.rank) is faces


def test_a_check_of_many_people_keeps_its_samples_per_person(monkeypatch):
    """32 check samples shared by 5 forgotten people are 6-7 each; min_samples_per_person 16 draws 80."""
    import legato_pl.callbacks.stop_when_forgotten as stop

    monkeypatch.setattr(stop, "fit_people", lambda trainer, module: ([3, 5, 7, 9, 11], [0, 1]))
    shared = StopWhenForgotten(num_samples=32)._check_labels(None, None)
    each = StopWhenForgotten(num_samples=32, min_samples_per_person=16)._check_labels(None, None)
    assert len(shared) == 32 and torch.bincount(shared).max() == 7
    assert len(each) == 80 and set(torch.bincount(each)[[3, 5, 7, 9, 11]].tolist()) == {16}
    monkeypatch.setattr(stop, "fit_people", lambda trainer, module: ([3], [0, 1]))
    assert len(StopWhenForgotten(num_samples=32, min_samples_per_person=16)._check_labels(None, None)) == 32  # one person
