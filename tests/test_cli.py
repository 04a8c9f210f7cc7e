"""The command line: one entry point, every subcommand listed, every bad input one ``error:`` line with exit 2.

The table of bad inputs below is the README's ("Bad input" in the *Reliability* section): a test keeps the two
the same, so the README's promises are the ones run here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from legato_pl.cli import SUBCOMMANDS, main
from legato_pl.methods import Legato
from legato_pl.models import load_base_model
from legato_pl.sampling import sample

REPO = Path(__file__).resolve().parents[1]

# (command as a user types it, the start of its one-line message, exit status). ``runs/demo/base`` and
# ``runs/demo/adapters`` stand for a base model and an artifact: the tests substitute tiny ones.
BAD_INPUTS = [
    ("python -m legato_pl audit --base_model runs/demo/base --artifact runs/demo/adapters --forget person_00 "
     "--encoder foo", "error: argument --encoder: invalid choice: 'foo'", 2),
    ("python -m legato_pl audit --base_model runs/demo/base --artifact runs/demo/adapters --forget nobody",
     "error: unknown identity 'nobody' in base model", 2),
    ("python -m legato_pl sample --base_model runs/demo/base --artifact runs/nope --identities person_00",
     "error: artifact directory runs/nope does not exist", 2),
    ("python -m legato_pl sample --base_model runs/typo --identities person_00",
     "error: base model directory runs/typo does not exist", 2),
    ("python -m legato_pl sample --base_model ./typo/base --identities person_00",
     "error: base model directory typo/base does not exist", 2),
    ("python -m legato_pl sample --base_model runs/demo/base --identities nobody",
     "error: unknown identity 'nobody' in base model", 2),
    ("python -m legato_pl sample --base_model runs/demo/base --identities person_00 --strengths 1",
     "error: strengths other than 0 need --artifact", 2),
    ("python -m legato_pl sample --base_model runs/demo/base --artifact runs/demo/adapters --identities person_00 "
     "--strengths 1.5", "error: strength must be in [0, 1]", 2),
    ("python -m legato_pl sample --identities person_00",
     "error: the following arguments are required: --base_model", 2),
    ("python -m legato_pl sample --base_model runs/demo/base --identities person_00 --device cuda:3",
     "error: --device cuda:3: this machine has", 2),
    ("python -m legato_pl sample --base_model runs/demo/base --identities person_00 --device toaster",
     "error: --device 'toaster' is not a device", 2),
    ("python -m legato_pl merge --base_model runs/demo/base --artifact runs/demo/adapters --out merged",
     "error: ODE adapters cannot be merged", 2),
    ("python -m legato_pl merge --base_model runs/demo/base --artifact runs/demo/base --out merged",
     "error: runs/demo/base is not a legato_pl artifact", 2),
    ("python -m legato_pl fit --config configs/demo.yaml --model.init_args.base_model runs/typo",
     "error: base model directory runs/typo does not exist", 2),
    ("python -m legato_pl frobnicate", "error: unknown subcommand 'frobnicate'", 2),
]


@pytest.fixture(scope="module")
def demo_paths(tiny_base_dir, tmp_path_factory) -> dict[str, str]:
    """What the table's placeholder paths stand for: a tiny base and an ODE-adapter artifact trained on it."""
    art = tmp_path_factory.mktemp("artifact")
    base = load_base_model(tiny_base_dir)
    Legato(base.unet, adapter={"hidden": 8}).save(art, base_model=str(tiny_base_dir))
    return {"runs/demo/base": str(tiny_base_dir), "runs/demo/adapters": str(art)}


def _argv(command: str, paths: dict[str, str], tmp_path: Path) -> list[str]:
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "legato_pl"], command
    subst = {**paths, "merged": str(tmp_path / "merged")}
    return [subst.get(w, w) for w in words[3:]]


@pytest.mark.parametrize("command, message, status", BAD_INPUTS, ids=[c[19:60] for c, _, _ in BAD_INPUTS])
def test_bad_input_is_one_line_with_exit_2(command, message, status, demo_paths, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as info:
        main(_argv(command, demo_paths, tmp_path))
    assert info.value.code == status
    err = capsys.readouterr().err
    paths = {v: k for k, v in demo_paths.items()}  # the message names the user's path: map ours back
    lines = [re.sub("|".join(map(re.escape, paths)), lambda m: paths[m.group(0)], line) for line in err.splitlines()]
    assert "Traceback" not in err
    if not command.startswith("python -m legato_pl fit"):  # LightningCLI may log before it fails
        assert len(lines) == 1, lines
    assert lines[-1].startswith(message), lines[-3:]
    assert not (tmp_path / "merged").exists()


def _readme_table() -> list[tuple[str, str, int]]:
    text = (REPO / "README.md").read_text()
    section = text.split("### Bad input", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(python -m legato_pl [^`]*)` \| `([^`]*)` \| (\d+) \|$", section, flags=re.M)
    return [(c, m, int(s)) for c, m, s in rows]


def test_readme_bad_input_table_is_the_tested_one():
    assert _readme_table() == BAD_INPUTS


def test_help_lists_every_subcommand():
    proc = subprocess.run([sys.executable, "-m", "legato_pl", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    listed = re.findall(r"^  (\w+) ", proc.stdout, flags=re.M)
    assert listed == list(SUBCOMMANDS) and {"fit", "sample", "audit", "merge"} <= set(listed)


def test_sample_without_an_artifact_draws_the_base(tiny_base_dir, tmp_path):
    from legato_pl.cli.sample import sample_grid

    grid = sample_grid(str(tiny_base_dir), ["person_01"], per_identity=2, steps=2)
    base = load_base_model(tiny_base_dir)
    reference = sample(base.unet.eval(), base.scheduler, torch.tensor([1, 1]), conditioning=base.conditioning,
                       num_inference_steps=2)
    assert grid.shape[0] == 1 and torch.equal(grid[0], reference)
    main(["sample", "--base_model", str(tiny_base_dir), "--identities", "person_01", "--steps", "1",
          "--per_identity", "1", "--out", str(tmp_path / "base.png")])
    assert (tmp_path / "base.png").is_file()


def test_adapters_flag_still_works_with_a_note(demo_paths, tmp_path, capsys):
    out = main(["sample", "--base_model", demo_paths["runs/demo/base"], "--adapters", demo_paths["runs/demo/adapters"],
                "--identities", "person_01", "--steps", "1", "--per_identity", "1", "--out", str(tmp_path / "g.png")])
    assert out is None and (tmp_path / "g.png").is_file()
    assert capsys.readouterr().err.splitlines() == ["note: --adapters is deprecated; use --artifact"]
