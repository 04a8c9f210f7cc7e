"""Interruption and resume, safe loading, reproducibility, and the remaining input errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from legato_pl.cli import main, run

HERE = Path(__file__).parent
REPO = HERE.parent
TINY = str(HERE / "configs" / "tiny_unlearn.yaml")


def _fit_cmd(base: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "legato_pl", "fit", "--config", TINY, "--model.init_args.base_model", str(base),
            "--trainer.logger.init_args.save_dir", str(out), "--model.init_args.output_dir", str(out / "adapters"),
            "--trainer.max_steps", "6", "--data.init_args.synthetic_images_per_identity", "4",
            "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
            "--trainer.callbacks.dirpath", str(out / "ckpt"), "--trainer.callbacks.save_last", "true",
            "--trainer.callbacks.every_n_train_steps", "2", *extra]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(HERE)}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("objective", [[], ["--model.init_args.w_adversarial", "1.0"]], ids=["default", "adversarial"])
def test_sigkill_then_resume_matches_uninterrupted(tiny_base_dir, tmp_path, objective):
    """A fit killed after step 4 and resumed from its last checkpoint ends where an uninterrupted one does (the
    adversarial objective's attack inputs are part of the checkpoint)."""
    full = _run(_fit_cmd(tiny_base_dir, tmp_path / "full", *objective))
    assert full.returncode == 0, full.stderr[-2000:]
    killed = _run(_fit_cmd(tiny_base_dir, tmp_path / "cut", *objective, "--trainer.callbacks+=fault_callbacks.KillAtStep",
                           "--trainer.callbacks.step", "5"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "cut" / "adapters").exists()
    ckpt = torch.load(tmp_path / "cut" / "ckpt" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4
    assert all(k.startswith(("method.adapters.", "adversary.")) for k in ckpt["state_dict"])
    assert ("adversary.input_0" in ckpt["state_dict"]) == bool(objective) and "optimizer_states" in ckpt
    resumed = _run(_fit_cmd(tiny_base_dir, tmp_path / "cut", *objective, "--ckpt_path", "last"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(tmp_path / "full" / "adapters" / "adapters.safetensors")
    b = load_file(tmp_path / "cut" / "adapters" / "adapters.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert any(a[k].abs().sum() > 0 for k in a if ".out." in k)  # the adapters did train


def test_same_seed_same_adapters(tiny_base_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        main(["fit", "--config", TINY, "--model.init_args.base_model", str(tiny_base_dir),
              "--trainer.logger.init_args.save_dir", str(tmp_path / name),
              "--model.init_args.output_dir", str(tmp_path / name / "adapters")])
        runs.append(load_file(tmp_path / name / "adapters" / "adapters.safetensors"))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_code_in_checkpoint_is_refused(tiny_base_dir, tmp_path, capsys):
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Exploit()}, bad)
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", TINY, "--model.init_args.base_model", str(tiny_base_dir),
              "--trainer.logger.init_args.save_dir", str(tmp_path), "--ckpt_path", str(bad)])
    assert info.value.code == 2
    assert "refusing to load" in capsys.readouterr().err


def test_config_key_typo_is_reported(tiny_base_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", TINY, "--model.init_args.base_model", str(tiny_base_dir),
              "--model.init_args.w_forgett", "2"])
    assert info.value.code != 0
    assert "w_forgett" in capsys.readouterr().err


def test_sample_strength_outside_unit_interval(tiny_base_dir, tmp_path, capsys):
    from legato_pl import ODEAdapterConfig, attach_adapters, save_adapters
    from legato_pl.models import load_base_model

    save_adapters(attach_adapters(load_base_model(tiny_base_dir).unet, ODEAdapterConfig(hidden=8)), tmp_path / "ad")
    with pytest.raises(SystemExit) as info:
        main(["sample", "--base_model", str(tiny_base_dir), "--artifact", str(tmp_path / "ad"), "--identities",
              "person_00", "--strengths", "1.5", "--steps", "1", "--out", str(tmp_path / "g.png")])
    assert info.value.code == 2
    assert "strength must be in [0, 1]" in capsys.readouterr().err


def test_ddp_two_processes_match_one_process(tiny_base_dir, tmp_path):
    """Same global batch (4): 2 ranks x 2 rows give the adapters of 1 process x 4 rows."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    outs = {}
    for devices in ("1", "2"):
        out = tmp_path / f"d{devices}"
        cmd = [sys.executable, "-m", "legato_pl", "fit", "--config", TINY, "--model.init_args.base_model",
               str(tiny_base_dir), "--trainer.logger.init_args.save_dir", str(out), "--model.init_args.output_dir",
               str(out / "adapters"), "--trainer.devices", devices, "--trainer.strategy",
               "ddp" if devices == "2" else "auto", "--trainer.max_steps", "4"]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[devices] = load_file(out / "adapters" / "adapters.safetensors")
    diff = max((outs["1"][k] - outs["2"][k]).abs().max().item() for k in outs["1"])
    assert diff <= 1e-5, diff  # float reduction order only (gloo all-reduce vs one batch mean)
    assert any(outs["1"][k].abs().sum() > 0 for k in outs["1"] if ".out." in k)


def test_nan_loss_stops_naming_the_term_and_keeps_last_good_state(tiny_base_dir, tmp_path):
    out = tmp_path / "nan"
    proc = _run(_fit_cmd(tiny_base_dir, out, "--trainer.callbacks+=fault_callbacks.PoisonAtStep",
                         "--trainer.callbacks.step", "2"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: loss term 'forget' is nan")
    ckpt = torch.load(out / "ckpt" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert not (out / "adapters").exists()  # no adapters written from a broken state


def test_trainer_loads_checkpoints_with_the_safe_plugin(tiny_base_dir, tmp_path):
    from legato_pl.checkpoint import SafeCheckpointIO

    cli = run(["fit", "--config", TINY, "--model.init_args.base_model", str(tiny_base_dir),
                "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.max_steps", "1"])
    assert isinstance(cli.trainer.strategy.checkpoint_io, SafeCheckpointIO)
    bad = tmp_path / "evil.ckpt"
    torch.save({"payload": _Exploit()}, bad)
    from legato_pl import LegatoInputError

    with pytest.raises(LegatoInputError, match="refusing to load"):
        cli.trainer.strategy.checkpoint_io.load_checkpoint(bad)
