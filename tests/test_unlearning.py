"""UnlearningModule and the CLI: objective terms fall, base stays bit-identical, artifacts, input errors."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from legato_pl import load_adapters
from legato_pl.cli import run
from legato_pl.data import IdentityDataModule
from legato_pl.errors import LegatoInputError
from legato_pl.methods import LoRA, method_spec, read_model_card
from legato_pl.models import UnlearningModule, load_base_model

from conftest import randomize_, tiny

TINY = str(Path(__file__).parent / "configs" / "tiny_unlearn.yaml")
REPO = Path(__file__).resolve().parents[1]


def _batch(seed: int = 0) -> dict:
    dm = IdentityDataModule(forget="person_01", image_size=16, batch_size=4, num_synthetic_identities=4,
                            synthetic_images_per_identity=8, hflip=False)
    torch.manual_seed(seed)
    return dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)


def _bound(module: UnlearningModule) -> UnlearningModule:
    """``module`` bound to :func:`_batch`'s data (which person is forgotten), as ``fit`` binds it."""
    dm = IdentityDataModule(forget="person_01", image_size=16, batch_size=4, num_synthetic_identities=4,
                            synthetic_images_per_identity=8, hflip=False)
    dm.setup("fit")
    module.bind_data(dm)
    return module


# the forget target only changes the forget and adjacency terms, so retain/trajectory run once
TERM_CASES = [("forget", "anchor"), ("forget", "negative"), ("retain", "anchor"), ("trajectory", "anchor"),
              ("adjacency", "anchor"), ("adjacency", "negative"), ("stranger", "negative"), ("forget", "other"),
              ("forget", "untrained"), ("untrained_path", "negative")]


@pytest.mark.parametrize("term, target", TERM_CASES)
def test_each_loss_term_falls_when_trained(tiny_base_dir, term, target):
    weights = {f"w_{t}": float(t == term)
               for t in ("forget", "retain", "trajectory", "adjacency", "stranger", "untrained_path")}
    if term != "adjacency":
        weights["w_adjacency"] = 0.0
    module = _bound(UnlearningModule(str(tiny_base_dir), method=tiny(), forget_target=target, **weights))
    randomize_(module.adapters, scale=0.2)  # so retain and trajectory do not start at exactly 0
    opt = torch.optim.Adam(module.adapters.parameters(), lr=1e-2)
    batch = _batch()
    values = []
    for _ in range(15):
        torch.manual_seed(123)  # the same noise and timesteps every step: a deterministic objective
        losses = module.compute_losses(batch)
        values.append(losses[term].item())
        opt.zero_grad()
        module.total_loss(losses).backward()
        opt.step()
    assert values[-1] < 0.7 * values[0], values


def test_stranger_term_adds_a_row_and_leaves_the_others_alone(tiny_base_dir):
    """Another person's photo under the forgotten condition: at init the teacher's gap between the two conditions
    (> 0), and the other terms are the same numbers with it on or off (trajectory consistency covers every student
    row, the new one too)."""
    batch = _batch()
    terms = {}
    for w in (0.0, 1.0):
        module = UnlearningModule(str(tiny_base_dir), method=tiny(), forget_target="negative", w_stranger=w)
        randomize_(module.adapters, scale=0.2)  # the student differs from the teacher
        terms[w] = module.compute_losses(batch, noise_step=7)
    assert "stranger" not in terms[0.0] and terms[1.0]["stranger"] > 0
    assert set(terms[1.0]) == {*terms[0.0], "stranger"}
    for name in ("forget", "retain", "adjacency"):
        torch.testing.assert_close(terms[1.0][name], terms[0.0][name])


def test_other_target_is_the_teacher_under_the_retain_persons_condition(tiny_base_dir):
    """At init the student is the teacher, so the ``other`` forget term is the teacher's gap between the person's
    condition and a retain person's on the person's photos: zero when the "retain" rows are the person again,
    positive for a real other person (and the ``anchor`` target, the null condition, is positive either way)."""
    batch = _batch()
    same = {**batch, "retain_images": batch["forget_images"], "retain_labels": batch["forget_labels"]}
    forget = {}
    for target in ("other", "anchor"):
        module = UnlearningModule(str(tiny_base_dir), method=tiny(), forget_target=target, w_adjacency=0.0)
        forget[target] = [module.compute_losses(b, noise_step=3)["forget"].item() for b in (same, batch)]
    assert forget["other"][0] == 0 and forget["other"][1] > 0
    assert min(forget["anchor"]) > 0


def test_untrained_target_is_the_teacher_under_a_fresh_row_per_person(tiny_base_dir):
    """``untrained``: the forget term at init is the teacher's gap between the person's row and a seeded fresh row
    (zero when the "fresh" row is the person's own, positive for a real draw); a person's draw is the same every
    call, two people's differ, and the draws have the identity rows' scale."""
    batch = _batch()
    module = UnlearningModule(str(tiny_base_dir), method=tiny(), forget_target="untrained", w_adjacency=0.0)
    cond, table = module.conditioning, module.unet.class_embedding.weight
    drawn = cond.untrained(module.unet, torch.tensor([1, 1, 2]))
    assert torch.equal(drawn[0], drawn[1]) and not torch.allclose(drawn[0], drawn[2])
    assert not any(torch.allclose(drawn[0], row) for row in table)  # a row the model never had
    rows = table[: cond.null_class]
    assert 0.3 < drawn.norm(dim=1).mean() / rows.norm(dim=1).mean() < 3
    fresh = module.compute_losses(batch, noise_step=3)["forget"].item()
    cond.untrained = lambda unet, labels: unet.class_embedding.weight[labels]  # the person's own row
    assert module.compute_losses(batch, noise_step=3)["forget"].item() == 0 < fresh


def _one_term_on_and_off(tiny_base_dir, term: str, batch: dict) -> tuple[UnlearningModule, dict]:
    """Losses with ``w_<term>`` 0 and 1 on randomised adapters: the term appears (> 0) and the other terms are the
    same numbers either way. Returns the module with the term on and both loss dicts."""
    terms = {}
    for w in (0.0, 1.0):
        module = _bound(UnlearningModule(str(tiny_base_dir), method=tiny(), forget_target="negative",
                                         untrained_path_samples=3, **{f"w_{term}": w}))
        randomize_(module.adapters, scale=0.2)
        terms[w] = module.compute_losses(batch, noise_step=7)
    assert set(terms[1.0]) == {*terms[0.0], term} and terms[1.0][term] > 0
    for name in ("forget", "retain", "adjacency"):
        torch.testing.assert_close(terms[1.0][name], terms[0.0][name])
    return module, terms


def test_untrained_path_term_adds_a_row_and_leaves_the_others_alone(tiny_base_dir):
    """The fresh row's own strangers under the person's condition: at init the teacher's gap between the person's row
    and the fresh one there (0 when the fresh row is the person's own), the bank drawn once per fit, the other terms
    the same numbers with the term on or off."""
    batch = _batch()
    module, terms = _one_term_on_and_off(tiny_base_dir, "untrained_path", batch)
    bank = module.untrained_bank()
    assert bank.shape[:2] == (1, 3) and module.untrained_bank() is bank  # drawn once
    module = _bound(UnlearningModule(str(tiny_base_dir), method=tiny(), w_untrained_path=1.0, untrained_path_samples=3))
    module.conditioning.untrained = lambda unet, labels: unet.class_embedding.weight[labels]  # the person's own row
    assert module.compute_losses(batch, noise_step=7)["untrained_path"].item() == 0
    with pytest.raises(LegatoInputError, match="untrained_path_samples must be >= 1"):
        UnlearningModule(str(tiny_base_dir), method=tiny(), w_untrained_path=1.0, untrained_path_samples=0)


def test_non_finite_loss_names_the_term(tiny_base_dir):
    module = UnlearningModule(str(tiny_base_dir), method=tiny())
    with pytest.raises(FloatingPointError, match="'retain'"):
        module.total_loss({"forget": torch.tensor(1.0), "retain": torch.tensor(float("nan"))})


def test_only_adapters_get_gradients_in_a_training_step(tiny_base_dir):
    module = UnlearningModule(str(tiny_base_dir), method=tiny())
    module.total_loss(module.compute_losses(_batch())).backward()
    assert all(p.grad is None and not p.requires_grad for p in module.unet.parameters())
    assert all(p.grad is not None for p in module.adapters.parameters())
    assert {n for n, p in module.named_parameters() if p.requires_grad} == {
        f"method.adapters.{n}" for n, _ in module.adapters.named_parameters()
    }


def _fit(tiny_base_dir, tmp_path, *extra: str):
    args = ["fit", "--config", TINY, "--model.init_args.base_model", str(tiny_base_dir),
            "--trainer.logger.init_args.save_dir", str(tmp_path), *extra]
    return run(args)


def test_cli_fit_end_to_end(tiny_base_dir, tmp_path):
    cli = _fit(tiny_base_dir, tmp_path)
    run = Path(cli.trainer.log_dir)
    assert list(run.glob("events.out.tfevents.*"))
    assert {p.name for p in (run / "adapters").iterdir()} == {"ode_adapters.json", "adapters.safetensors", "legato_method.json",
                                                            "README.md"}
    # the frozen base is bit-identical after training
    fresh = load_base_model(tiny_base_dir).unet.state_dict()
    trained = cli.model.unet.state_dict()
    assert all(torch.equal(fresh[k], trained[k]) for k in fresh)
    # checkpoints hold the trainable state only
    ckpt = torch.load(next(run.glob("checkpoints/*.ckpt")), weights_only=True)
    assert ckpt["state_dict"] and all(k.startswith("method.adapters.") for k in ckpt["state_dict"])
    # the adapters moved, and the saved ones reproduce the module's outputs on a fresh UNet
    weights = load_file(run / "adapters" / "adapters.safetensors")
    assert any(v.abs().sum() > 0 for k, v in weights.items() if ".out." in k)
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([5, 50]), torch.tensor([1, 2])
    unet = load_base_model(tiny_base_dir).unet
    load_adapters(unet, run / "adapters")
    with torch.no_grad():
        torch.testing.assert_close(unet(x, t, class_labels=y).sample, cli.model.unet(x, t, class_labels=y).sample)


@pytest.mark.parametrize("extra, message", [
    (["--data.init_args.forget", "nobody"], "unknown identity 'nobody'"),
    (["--data.init_args.retain", "[person_01, person_02]"], "both forget and retain"),
    (["--data.init_args.num_synthetic_identities", "6", "--data.init_args.forget", "person_05"],
     "'person_05' is not a class of the base model"),
    (["--data.init_args.image_size", "15"], "image_size 15 must be a multiple of 2"),
    (["--model.init_args.forget_target", "sideways"], "forget_target"),
    # the ForgettingCurve checks itself before training, not at its first sweep after it
    (['--trainer.callbacks+={"class_path": "legato_pl.callbacks.ForgettingCurve", "init_args": {"encoder": "nope"}}'],
     "unknown encoder 'nope'"),
    (["--data", "lightning.pytorch.demos.boring_classes.BoringDataModule"], "needs a datamodule with class_names"),
])
def test_cli_bad_input_stops_with_one_line(tiny_base_dir, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        _fit(tiny_base_dir, tmp_path, *extra)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err[-3:]
    assert not list(tmp_path.rglob("*.ckpt"))


def test_console_script_main_returns_none_so_sys_exit_is_zero(monkeypatch):
    """``legato-pl`` runs ``sys.exit(main())``: main must not return the LightningCLI object."""
    import legato_pl.cli as cli

    monkeypatch.setattr(cli, "run", lambda args=None: object())
    assert cli.main(["fit"]) is None


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: p, "not a diffusers pipeline directory"),
])
def test_cli_bad_base_model_directory(tmp_path, capsys, make, message):
    with pytest.raises(SystemExit) as exit_info:
        _fit(make(tmp_path), tmp_path)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("objective", [[], ["--model.init_args.w_adversarial", "1.0"]], ids=["default", "adversarial"])
def test_cli_ddp_two_processes(tiny_base_dir, tmp_path, objective):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "legato_pl", "fit", "--config", TINY, "--model.init_args.base_model",
           str(tiny_base_dir), "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.devices", "2",
           "--trainer.strategy", "ddp", "--model.init_args.output_dir", str(tmp_path / "adapters"), *objective]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "adapters" / "adapters.safetensors").is_file()
    assert len(list(tmp_path.rglob("events.out.tfevents.*"))) == 1  # only rank 0 logs


def test_cli_selects_the_method_by_class_path(tiny_base_dir, tmp_path):
    """LightningCLI's own selection: class_path + init_args, no sibling options; hparams stay plain data."""
    cli = _fit(tiny_base_dir, tmp_path, "--model.init_args.method.class_path", "legato_pl.methods.LoRA",
               "--model.init_args.method.init_args.rank", "2", "--trainer.max_steps", "1")
    assert isinstance(cli.model.method, LoRA) and cli.model.method.rank == 2
    meta = json.loads((Path(cli.trainer.log_dir) / "adapters" / "legato_method.json").read_text())
    assert meta["method"] == "lora" and meta["options"]["rank"] == 2
    # the model card fit writes beside the weights: base, person, method, its options, strength, training
    card = read_model_card(Path(cli.trainer.log_dir) / "adapters")
    assert (card["base_model"], card["forget"], card["method"], card["strength"]) == (str(tiny_base_dir), ["person_01"],
                                                                                      "lora", 1.0)
    assert card["method_options"]["rank"] == 2 and card["training"]["steps"] == 1
    assert card["training"]["forget_target"] == cli.model.hparams.forget_target
    ckpt = torch.load(next(Path(cli.trainer.log_dir).glob("checkpoints/*.ckpt")), weights_only=True)
    assert ckpt["hyper_parameters"]["method"]["class_path"] == "legato_pl.methods.LoRA"
    assert ckpt["hyper_parameters"]["method"]["init_args"]["rank"] == 2


def test_method_accepts_name_class_partial_and_spec(tiny_base_dir):
    specs = ["lora", LoRA, functools.partial(LoRA, rank=2), {"class_path": "legato_pl.methods.LoRA", "init_args": {"rank": 2}},
             "legato_pl.methods.LoRA"]
    ranks = [UnlearningModule(str(tiny_base_dir), method=spec).method.rank for spec in specs]
    assert ranks == [4, 4, 2, 2, 4]
    assert method_spec(UnlearningModule(str(tiny_base_dir), method=tiny()).method)["init_args"]["adapter"]["hidden"] == 8
    with pytest.raises(ValueError, match="cannot be imported"):
        UnlearningModule(str(tiny_base_dir), method={"class_path": "legato_pl.methods.Nope"})
    with pytest.raises(ValueError, match="not an UnlearningMethod"):
        UnlearningModule(str(tiny_base_dir), method=lambda unet: unet)


def test_16_mixed_with_a_grad_scaler_trains_and_an_overflow_step_is_not_fatal(tiny_base_dir, tmp_path):
    """Under 16-mixed the grad scaler skips a step whose gradients overflowed (and lowers its scale): the
    non-finite guard leaves that to it; without a scaler an infinite gradient still stops the fit."""
    import lightning.pytorch as pl
    from lightning.pytorch.plugins import MixedPrecision

    def trainer(**kw) -> pl.Trainer:
        return pl.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, **kw)

    scaled = trainer(plugins=[MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))])
    module = UnlearningModule(str(tiny_base_dir), method=tiny(), output_dir=str(tmp_path / "fp16"))
    dm = IdentityDataModule(forget="person_01", image_size=16, batch_size=4, num_synthetic_identities=4,
                            synthetic_images_per_identity=8)
    scaled.fit(module, datamodule=dm)
    assert scaled.global_step == 3 and all(torch.isfinite(p).all() for p in module.method.trainable_parameters())
    p = module.method.trainable_parameters()[0]
    p.grad = torch.full_like(p, float("inf"))
    module.on_before_optimizer_step(None)  # the scaler's to skip
    module.trainer = trainer(precision="bf16-mixed")  # no scaler: nothing would skip it
    with pytest.raises(FloatingPointError, match="not finite"):
        module.on_before_optimizer_step(None)


def test_accumulated_micro_batches_each_get_their_own_data_and_noise(tiny_base_dir, tmp_path):
    import lightning.pytorch as pl

    module = UnlearningModule(str(tiny_base_dir), method=tiny(), output_dir=str(tmp_path / "out"))
    seen = []
    compute = module.compute_losses

    def recording(batch, noise_step=None):
        seen.append((noise_step, float(batch["forget_images"].sum()), float(batch["retain_images"].sum())))
        return compute(batch, noise_step)

    module.compute_losses = recording
    dm = IdentityDataModule(forget="person_01", image_size=16, batch_size=4, num_synthetic_identities=4,
                            synthetic_images_per_identity=16)
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, accumulate_grad_batches=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    assert [s[0] for s in seen] == [0, 1, 2, 3]  # two optimizer steps of two micro-batches, four noise draws
    assert len({s[2] for s in seen}) == 4, "an accumulated micro-batch repeated another's retain photos"


def _adversarial(tiny_base_dir, w: float, randomize: bool = True, **kwargs) -> tuple[UnlearningModule, dict]:
    module = _bound(UnlearningModule(str(tiny_base_dir), method=tiny(), forget_target="negative", w_adversarial=w,
                                     **kwargs))
    if randomize:
        randomize_(module.adapters, scale=0.2)  # the student differs from the teacher
    return module, _batch()


def test_adversarial_term_attacks_the_student_and_trains_only_the_adapters(tiny_base_dir):
    """In training the inner attack moves the person's condition input (signed steps of adversarial_lr), a new
    ``adversarial`` term appears, the other terms are the same numbers with it on or off, and gradients reach the
    adapters only (not the UNet, not the attack's input). In evaluation the input stays where it is."""
    terms = {}
    for w in (0.0, 1.0):
        module, batch = _adversarial(tiny_base_dir, w, adversarial_steps=3, adversarial_lr=0.05)
        start = module.adversary.input_0.clone() if w else None
        terms[w] = module.compute_losses(batch, noise_step=7)
    # it starts at the person's own class embedding and moves 3 signed steps on every element
    torch.testing.assert_close(start, module.unet.class_embedding.weight[1])
    moved = module.adversary.input_0 - start
    assert moved.abs().max() == pytest.approx(0.15) and moved.abs().min() > 0
    assert set(terms[1.0]) == {*terms[0.0], "adversarial"} and terms[1.0]["adversarial"] > 0
    for name in ("forget", "retain", "adjacency"):
        torch.testing.assert_close(terms[1.0][name], terms[0.0][name])
    module.total_loss(terms[1.0]).backward()
    assert all(p.grad is None for p in module.unet.parameters()) and module.adversary.input_0.grad is None
    assert all(p.grad is not None for p in module.adapters.parameters())
    module.eval()
    frozen = module.adversary.input_0.clone()
    module.compute_losses(batch, noise_step=8)
    assert torch.equal(module.adversary.input_0, frozen)


def test_adversarial_guard_keeps_other_people_under_the_inverted_condition(tiny_base_dir):
    """w_adversarial_retain adds one term: another person's photo under the inverted condition, student against
    teacher (0 when they agree, as at init); the other terms are the same numbers with it (trajectory aside: it
    averages over every row of the student's forward)."""
    terms = {}
    for guard in (0.0, 5.0):
        module, batch = _adversarial(tiny_base_dir, 1.0, w_adversarial_retain=guard)
        terms[guard] = module.compute_losses(batch, noise_step=7)
    assert set(terms[5.0]) == {*terms[0.0], "adversarial_retain"} and terms[5.0]["adversarial_retain"] > 0
    for name in ("forget", "retain", "adjacency", "adversarial"):
        torch.testing.assert_close(terms[5.0][name], terms[0.0][name])
    module.total_loss(terms[5.0]).backward()
    assert all(p.grad is None for p in module.unet.parameters())
    # at init the adapters are the identity: the student denoises as the teacher does under any condition
    at_init, batch = _adversarial(tiny_base_dir, 1.0, randomize=False, w_adversarial_retain=5.0)
    assert at_init.compute_losses(batch, noise_step=7)["adversarial_retain"] == 0


def test_adversarial_path_sends_the_inverted_condition_along_a_strangers_path(tiny_base_dir):
    """w_adversarial_path alone runs the inner attack and adds one term (the fresh row's stranger under the inverted
    condition, student against the teacher under the fresh row) without the adversarial forget term; the other
    terms are the same numbers with it; 0 when the inverted condition is the fresh row and the adapters are the
    identity; only the adapters get gradients."""
    batch = _batch()
    module, terms = _one_term_on_and_off(tiny_base_dir, "adversarial_path", batch)
    assert module.adversary.input_0.shape == module.unet.class_embedding.weight[1].shape
    module.total_loss(terms[1.0]).backward()
    assert all(p.grad is None for p in module.unet.parameters()) and module.adversary.input_0.grad is None
    assert all(p.grad is not None for p in module.adapters.parameters())
    # the attack's input held at the fresh row, adapters the identity: the student under it is the teacher there
    module = _bound(UnlearningModule(str(tiny_base_dir), method=tiny(), w_adversarial_path=1.0,
                                     untrained_path_samples=3, adversarial_steps=0))
    fresh = module.conditioning.untrained(module.unet, module.forget_classes)
    module.adversary.input_0.copy_(fresh[0])
    assert module.compute_losses(batch, noise_step=7)["adversarial_path"].item() == 0
    UnlearningModule(str(tiny_base_dir), method=tiny(), w_adversarial_path=1.0, w_adversarial_retain=5.0)  # guarded


def test_adversary_finds_a_condition_that_draws_the_person(tiny_base_dir):
    """The inner attack lowers the student's denoising loss of the person's photos under its condition, as the
    audit's inversion does; the model's parameters get no gradient from it."""
    from legato_pl.models.diffusion import add_noise, diffusion_target

    module, batch = _adversarial(tiny_base_dir, 1.0, adversarial_steps=40, adversarial_lr=0.02)
    cond = module.conditioning
    x0 = batch["forget_images"]
    x_t, noise, t = add_noise(module.scheduler, x0, torch.Generator().manual_seed(0))
    rows = torch.zeros(len(x0), dtype=torch.long)
    losses = module.adversary.attack(module.unet, cond, x_t, t, diffusion_target(module.scheduler, x0, noise, t), rows)
    assert len(losses) == 40 and losses[-1] < 0.96 * losses[0], losses  # a random tiny UNet: a small but steady fall
    assert all(p.grad is None for p in module.parameters())


def test_adversary_can_start_where_the_audits_inversion_starts(tiny_base_dir):
    """adversarial_init "unconditional": the attack's input starts at the null class row (the audit's inversion's start, an
    attacker who does not know the name), "name" at the person's own row."""
    starts = {}
    for init in ("name", "unconditional"):
        module, _ = _adversarial(tiny_base_dir, 1.0, adversarial_steps=0, adversarial_init=init)
        starts[init] = module.adversary.input_0.clone()
    rows = module.unet.class_embedding.weight
    torch.testing.assert_close(starts["name"], rows[1])
    torch.testing.assert_close(starts["unconditional"], rows[module.null_class])
    assert not torch.equal(starts["name"], starts["unconditional"])


def test_adversarial_init_choices_survive_the_command_line():
    """A choice YAML reads as something else (``null`` -> None) could not be given from a config or the CLI."""
    import yaml

    from legato_pl.models.unlearning import ADVERSARIAL_INITS

    assert all(yaml.safe_load(choice) == choice for choice in ADVERSARIAL_INITS)


@pytest.mark.parametrize("kwargs, message", [({"w_adversarial": -1.0}, "w_adversarial must be >= 0"),
                                             ({"adversarial_lr": 0.0}, "adversarial_lr must be > 0"),
                                             ({"adversarial_steps": -1}, "adversarial_steps must be >= 0"),
                                             ({"w_adversarial_path": -1.0}, "w_adversarial_path must be >= 0"),
                                             ({"w_adversarial_retain": 1.0}, "guards an adversarial term"),
                                             ({"adversarial_init": "own"}, "adversarial_init must be one of")])
def test_bad_adversarial_settings_are_refused(tiny_base_dir, kwargs, message):
    from legato_pl.errors import LegatoInputError

    with pytest.raises(LegatoInputError, match=message):
        UnlearningModule(str(tiny_base_dir), method=tiny(), **kwargs)
