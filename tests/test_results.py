"""Every results file reproduces from its own ``command``: the benchmark script's own parser takes it, it writes
this very file, it names no ``/tmp`` path, and the file records the ``commit`` whose code made it."""

from __future__ import annotations

import importlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "benchmarks"))

# Files the lead engineer regenerates (issue 26): each is reported as an expected failure with its reason, so it
# stays visible; once a file passes, the test fails until it is removed from this list.
TO_REGENERATE = {
}


def problems(file: Path, data: dict | None = None) -> list[str]:
    """Why ``file`` (its content ``data``, read when not given) does not reproduce from its command (empty: it does)."""
    data = json.loads(file.read_text()) if data is None else data
    found = []
    command = data.get("command")
    if not isinstance(command, str):
        return ["no command"]
    words = shlex.split(command)
    if "/tmp" in command:
        found.append(f"a /tmp path in {command!r}")
    if len(words) < 2 or words[0] != "python" or not words[1].startswith("benchmarks/") or ";" in command:
        return [*found, f"not one benchmark script call: {command!r}"]
    script = REPO / words[1]
    if not script.is_file():
        return [*found, f"{words[1]} does not exist"]
    module = importlib.import_module(script.stem)
    if not hasattr(module, "build_parser"):
        return [*found, f"{script.name} exposes no build_parser()"]
    parser = module.build_parser()
    try:
        args = parser.parse_args(words[2:])
    except SystemExit:
        return [*found, f"{script.name}'s parser refuses {words[2:]}"]
    out = Path(args.out)
    written = out if out.suffix == ".json" else out / f"{getattr(args, 'name', None) or script.stem}.json"
    written = written if written.is_absolute() else REPO / written
    if written.resolve() != file.resolve():
        found.append(f"the command writes {written.relative_to(REPO) if written.is_relative_to(REPO) else written}")
    commit = data.get("commit")
    if not isinstance(commit, str):
        found.append("no commit field")
    elif subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=REPO, capture_output=True).returncode:
        found.append(f"commit {commit} is not in this repository's history")
    found += [f"{key} {interval} misses its estimate {value}" for key, value, interval in missed_estimates(data)]
    return found


def missed_estimates(data) -> list[tuple[str, float, list]]:
    """Every ``<metric>_ci`` that does not hold its ``<metric>`` (up to float rounding): an invalid interval."""
    from harness import misses_estimate

    found = []
    if isinstance(data, dict):
        found += [(key, data[key[:-3]], interval) for key, interval in data.items() if misses_estimate(data, key)]
        data = list(data.values())
    for item in data if isinstance(data, list) else []:
        found += missed_estimates(item)
    return found


@pytest.mark.parametrize("name", sorted(p.name for p in RESULTS.glob("*.json")))
def test_results_file_reproduces_from_its_command(name):
    found = problems(RESULTS / name)
    if name in TO_REGENERATE:
        if not found:
            pytest.fail(f"{name} now reproduces from its command: remove it from TO_REGENERATE")
        pytest.xfail(f"{TO_REGENERATE[name]}: {'; '.join(found)}")
    assert not found, found


@pytest.mark.parametrize("command, problem", [
    ("python benchmarks/t2i_lfw.py --base runs/t2i/base --work runs/t2i/benchmark_null --name t2i_lfw_null",
     "the command writes benchmarks/results/t2i_lfw_null.json"),
    ("python benchmarks/name_gap.py --base /tmp/base --out benchmarks/results/t2i_lfw.json", "a /tmp path"),
    ("python benchmarks/t2i_lfw.py --base runs/t2i/base --nope 1", "parser refuses"),
    ("python benchmarks/gone.py", "does not exist"),
])
def test_a_stale_command_is_caught(command, problem):
    """The checks can fail: t2i_lfw.json with each stale command, or without its commit, is refused, naming why."""
    file = RESULTS / "t2i_lfw.json"
    data = {**json.loads(file.read_text()), "command": command}
    assert any(problem in p for p in problems(file, data)), problems(file, data)
    good = json.loads(file.read_text())
    assert problems(file, good) == []
    assert problems(file, {k: v for k, v in good.items() if k != "commit"}) == ["no commit field"]
