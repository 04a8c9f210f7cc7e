"""Every snippet and command in README.md and docs/*.md runs as written, on tiny models.

Python blocks run whole, in a fresh namespace holding only the objects of ``GIVEN`` (what the prose around a
snippet calls ``unet``, ``pipe``, ...): a missing import or a renamed function fails. Paths of trained runs are
replaced by fixture-built ones (``SUBSTITUTIONS``). Shell commands: ``python -m legato_pl fit`` runs LightningCLI
with ``--print_config`` (every flag and config key is checked), ``sample`` / ``audit`` / ``merge`` and
``python benchmarks/*.py`` are parsed by their own parsers, ``bash scripts/*.sh`` are syntax-checked.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import DDPMPipeline

from legato_pl.methods import Legato
from legato_pl.models import load_base_model

from conftest import tiny_unet

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
sys.path.insert(0, str(REPO / "benchmarks"))

# a trained run's path in the docs -> what stands for it here (a tiny base, or an ODE-adapter artifact on it)
SUBSTITUTIONS = {
    "runs/demo/base": "base", "runs/lfw/base": "base", "runs/demo/adapters": "artifact",
    "runs/lfw/adapters": "artifact", "runs/t2i/adapters": "artifact", "runs/lfw/compare/lora/weights": "artifact",
}


def _blocks(lang: str) -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for k, m in enumerate(re.finditer(rf"^```{lang}\n(.*?)^```", doc.read_text(), flags=re.S | re.M)):
            found.append((f"{doc.relative_to(REPO)}#{lang}{k}", m.group(1)))
    return found


def _commands() -> list[tuple[str, str]]:
    commands = []
    for where, block in _blocks("bash"):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append((where, line))
    return commands


@pytest.fixture(scope="module")
def paths(tiny_base_dir, tmp_path_factory) -> dict[str, str]:
    artifact = tmp_path_factory.mktemp("docs_artifact")
    Legato(load_base_model(tiny_base_dir).unet, adapter={"hidden": 8}).save(artifact, base_model=str(tiny_base_dir))
    made = {"base": str(tiny_base_dir), "artifact": str(artifact)}
    return {path: made[kind] for path, kind in SUBSTITUTIONS.items()}


def _substitute(text: str, paths: dict[str, str]) -> str:
    for path in sorted(paths, key=len, reverse=True):
        text = re.sub(rf"(?<![\w/]){re.escape(path)}(?![\w/])", paths[path], text)
    return text


def given(tiny_base_dir: Path) -> dict:
    """What the prose around the snippets names: a UNet and its inputs, and a pipeline of the base."""
    return {"unet": tiny_unet(), "x_t": torch.randn(2, 3, 16, 16), "t": torch.tensor([10, 50]),
            "c": torch.tensor([0, 1]), "pipe": DDPMPipeline.from_pretrained(str(tiny_base_dir))}


@pytest.mark.parametrize("where, code", _blocks("python"), ids=[w for w, _ in _blocks("python")])
def test_python_snippet_runs(where, code, paths, tiny_base_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets that save write here
    exec(compile(_substitute(code, paths), where, "exec"), {"__name__": "snippet", **given(tiny_base_dir)})


@pytest.mark.parametrize("where, command", _commands(), ids=[f"{w}:{c[:50]}" for w, c in _commands()])
def test_shell_command_runs(where, command, paths, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    words = shlex.split(_substitute(command, paths))
    if words[:2] == ["bash", "scripts/" + Path(words[1]).name] and len(words) == 2:
        assert subprocess.run(["bash", "-n", words[1]]).returncode == 0
    elif words[:4] == ["python", "-m", "legato_pl", "fit"]:
        from legato_pl.cli import main

        with pytest.raises(SystemExit) as info:
            main([*words[3:], "--print_config"] if "--help" not in words else words[3:])
        assert info.value.code == 0, command
    elif words[:3] == ["python", "-m", "legato_pl"]:
        import importlib

        module = importlib.import_module(f"legato_pl.cli.{words[3]}")
        module.build_parser().parse_args(words[4:])
    elif words[0] == "python" and words[1].startswith("benchmarks/"):
        import importlib

        importlib.import_module(Path(words[1]).stem).build_parser().parse_args(words[2:])
    else:
        pytest.fail(f"{where}: no way to check {command!r}; add one here")


def test_readme_is_short_and_defines_the_metrics_before_the_first_result():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    for needed in ("Quick start", "Commands", "Use it on your own model", "What the numbers mean", "Results", "Limits"):
        assert any(h.startswith(needed) for h in headings), needed
    assert text.index("`moved_forget`") < text.index("## Results")
    for link in re.findall(r"\]\((benchmarks/results/[^)]+|docs/[^)]+)\)", text):
        assert (REPO / link).is_file(), link
