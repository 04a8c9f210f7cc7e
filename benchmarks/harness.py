"""Helpers shared by the LFW benchmark scripts: child fits with peak RSS, step times, argument sets."""

from __future__ import annotations

import argparse
import ctypes
import functools
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "faces"


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` through a temporary file: benchmark runs sharing a cache never read a half-written one."""
    import torch

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_report(directory: str | Path, stem: str, out: dict, md: list[str]) -> dict:
    """A benchmark's results: ``out`` as ``stem.json`` and the lines ``md`` as ``stem.md`` in ``directory``
    (created), the markdown printed too."""
    results = Path(directory)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{stem}.json").write_text(json.dumps(out, indent=1) + "\n")
    (results / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md), flush=True)
    return out


def _die_with_parent() -> None:
    """In a fit's child process (Linux): killed when the benchmark dies, so no orphan fit keeps a core busy."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except OSError:
        pass


def run_cli(config: str, overrides: list[str]) -> dict:
    """Run ``python -m legato_pl fit`` in a child process; its wall time and peak RSS (polled)."""
    cmd = [sys.executable, "-m", "legato_pl", "fit", "--config", config, *overrides]
    print("+", shlex.join(cmd), flush=True)
    start = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                             preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    proc, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.5)
    if child.wait() != 0:
        raise subprocess.CalledProcessError(child.returncode, cmd)
    return {"wall_time_s": time.perf_counter() - start, "peak_rss_mb": peak / 2**20}


def seconds_per_step(log_dirs: Path | list[Path]) -> float:
    """Steady-state seconds per optimisation step from the TensorBoard wall times of train/loss (logged every
    step) in ``log_dirs`` (the attempts of one fit), skipping each attempt's first step (its start-up)."""
    seconds = steps = 0.0
    for log_dir in [log_dirs] if isinstance(log_dirs, Path) else log_dirs:
        scalars = train_losses(log_dir)
        if len(scalars) >= 3:
            seconds += scalars[-1].wall_time - scalars[1].wall_time
            steps += scalars[-1].step - scalars[1].step
    return seconds / steps if steps else float("nan")


def pick_retain(names: list[str], forget: str, n: int) -> list[str]:
    others = [x for x in names if x != forget]
    step = max(1, len(others) // n)
    return others[::step][:n]


def add_unlearning_args(p: argparse.ArgumentParser, work: str, steps: int = 200) -> None:
    """Arguments of the scripts that fit unlearning runs on an existing LFW base and sample them."""
    p.add_argument("--base", default="runs/lfw/base", help="base model directory (configs/pretrain_lfw.yaml)")
    p.add_argument("--root", default=str(FACES))
    p.add_argument("--work", default=work, help="run directory for the fits")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results directory")
    p.add_argument("--steps", type=int, default=steps, help="optimisation steps per fit")
    p.add_argument("--unlearn-config", default="configs/legato_lfw.yaml")
    p.add_argument("--unlearn-args", default="",
                   help="extra CLI overrides for every fit (quoted); a method's own overrides are applied after them")
    p.add_argument("--retain-identities", type=int, default=8, help="retain people sampled in evaluation")
    p.add_argument("--per-identity", type=int, default=8, help="samples per retain person")
    p.add_argument("--forget-samples", type=int, default=32, help="samples per forgotten person")
    p.add_argument("--steps-ddim", type=int, default=25)
    p.add_argument("--guidance", type=float, default=3.0)


def add_pretrain_and_fit_args(p: argparse.ArgumentParser, name: str, work: str, pretrain_config: str,
                              unlearn_config: str, steps: int = 300) -> None:
    """Arguments of the scripts that pretrain a missing base, fit one person away and write ``<out>/<name>.*``."""
    p.add_argument("--forget", default="George_W_Bush")
    p.add_argument("--work", default=work, help="run directory of the fit")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results directory")
    p.add_argument("--name", default=name, help="results file stem")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--pretrain-config", default=pretrain_config)
    p.add_argument("--unlearn-config", default=unlearn_config)
    p.add_argument("--pretrain-args", default="", help="extra CLI overrides for pretraining a missing base (quoted)")
    p.add_argument("--unlearn-args", default="", help="extra CLI overrides for the fit (quoted)")


FIT_CALLBACKS = ("StopWhenForgotten",)  # config callbacks that decide what a fit learns: kept in benchmark fits


def fit_callbacks(config: str) -> str:
    """The config's callbacks that shape the result (stopping), as a CLI value; checkpoints, curves and grids go."""
    callbacks = (yaml.safe_load(Path(config).read_text()).get("trainer") or {}).get("callbacks") or []
    return json.dumps([c for c in callbacks if c["class_path"].rsplit(".", 1)[-1] in FIT_CALLBACKS])


def with_stop(config: str | Path, **init_args) -> list[str]:
    """CLI overrides that keep the config's stopping callback with some of its arguments changed."""
    stop = json.loads(fit_callbacks(str(config)))
    if not stop:
        raise ValueError(f"{config} has no stopping callback to change")
    return ["--trainer.callbacks", json.dumps([{**c, "init_args": {**c.get("init_args", {}), **init_args}} for c in stop])]


CHECKPOINT_EVERY = 10  # steps between the checkpoints a cut benchmark fit resumes from


def fit_unlearning(a: argparse.Namespace, forget: str, run: Path, extra: list[str] = ()) -> dict:
    """One ``fit`` of ``a.unlearn_config`` into ``run`` (weights in ``run/weights``, events in ``run/fit``),
    with no curves or validation (a stopping callback of the config stays: it decides the result); its wall
    time, peak RSS, steady seconds per step and the steps it ran.

    A fit cut short (a session's end, a crash) resumes from its last checkpoint (``run/ckpt``, every
    :data:`CHECKPOINT_EVERY` steps, removed once the weights are written) when called again with the same
    configuration and base (another starts afresh), and ends as an uninterrupted one would. Each
    attempt logs to its own ``run/fit/version_<i>``; the wall time adds every attempt's (a cut one counted to its
    last logged step) and the peak RSS is the last attempt's."""
    key, last, attempts_file = fit_key(a, forget, extra), run / "ckpt" / "last.ckpt", run / "attempts.json"
    which = {"fit_key": key, "base_fingerprint": base_fingerprint(a.base)}
    attempts = json.loads(attempts_file.read_text()) if attempts_file.is_file() else {}
    if not last.is_file() or {k: attempts.get(k) for k in which} != which:  # a fresh fit: nothing of another counts
        shutil.rmtree(run / "fit", ignore_errors=True)
        shutil.rmtree(run / "ckpt", ignore_errors=True)
        attempts = {}
    starts = attempts.get("starts", [])
    run.mkdir(parents=True, exist_ok=True)
    attempts_file.write_text(json.dumps({**which, "starts": [*starts, time.time()]}) + "\n")
    if starts:
        print(f"resuming the fit in {run} from {last} (attempt {len(starts) + 1})", flush=True)
    result = run_cli(a.unlearn_config, [
        "--model.init_args.base_model", a.base, "--model.init_args.output_dir", str(run / "weights"),
        "--data.init_args.root", a.root, "--data.init_args.forget", forget, "--trainer.max_steps", str(a.steps),
        "--trainer.logger.init_args.save_dir", str(run), "--trainer.logger.init_args.name", "fit",
        "--trainer.logger.init_args.version", str(len(starts)), "--trainer.log_every_n_steps", "1",
        "--trainer.callbacks", fit_callbacks(a.unlearn_config), "--trainer.limit_val_batches", "0",
        *shlex.split(a.unlearn_args), *extra,  # the method's own overrides last: they win
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint", "--trainer.callbacks.dirpath",
        str(run / "ckpt"), "--trainer.callbacks.save_last", "true", "--trainer.callbacks.save_top_k", "0",
        "--trainer.callbacks.every_n_train_steps", str(CHECKPOINT_EVERY), *(["--ckpt_path", str(last)] if starts else [])])
    shutil.rmtree(run / "ckpt", ignore_errors=True)
    attempts_file.unlink()
    log_dirs = [run / "fit" / f"version_{i}" for i in range(len(starts) + 1)]
    for log_dir, start in zip(log_dirs, starts):  # the cut attempts, to their last logged step
        result["wall_time_s"] += max([start, *(x.wall_time for x in train_losses(log_dir)[-1:])]) - start
    return {**result, "seconds_per_step": seconds_per_step(log_dirs), "steps_run": steps_run(log_dirs[-1]),
            "attempts": len(log_dirs), **which}


def train_losses(log_dir: Path) -> list:
    """The train/loss scalars (step, wall_time, value) a fit logged in ``log_dir`` (none when it logged none)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return events.Scalars("train/loss") if "train/loss" in events.Tags()["scalars"] else []


def cached_fit(a: argparse.Namespace, forget: str, run: Path, extra: list[str] = ()) -> dict:
    """One fit into ``run`` (:func:`fit_unlearning`; ``forget``: the CLI value, a name or a JSON list), or the one
    cached there in ``fit.json`` when it is of this base and configuration (refused otherwise)."""
    if (run / "fit.json").is_file():
        fit = json.loads((run / "fit.json").read_text())
        check_cached_fit(fit, a.base, run, fit_key(a, forget, extra))
        return fit
    fit = fit_unlearning(a, forget, run, extra)
    (run / "fit.json").write_text(json.dumps(fit) + "\n")
    return fit


def steps_run(log_dir: Path) -> int:
    """Optimisation steps a fit ran (the last logged train/loss step + 1)."""
    return train_losses(log_dir)[-1].step + 1


def fit_key(a: argparse.Namespace, forget: str, extra: list[str] = ()) -> str:
    """Digest of what makes a fit: the unlearning config file's text, the overrides, the person and the steps."""
    parts = [Path(a.unlearn_config).read_text(), a.unlearn_args, shlex.join(extra), forget, str(a.steps)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def base_fingerprint(base: str | Path) -> str:
    """Size and modification time of every file of a base's UNet: changes when the base is retrained."""
    files = sorted(p for p in (Path(base) / "unet").rglob("*") if p.is_file())
    return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


def check_cached_fit(fit: dict, base: str | Path, run: Path, key: str) -> None:
    """Refuse to score a cached fit in ``run`` trained on another version of ``base`` or with another
    configuration than ``key`` (:func:`fit_key`) asks for."""
    if fit.get("base_fingerprint") != base_fingerprint(base):
        raise SystemExit(f"{run} holds a fit of another version of {base} (retrained since?): remove {run} or "
                         "pass another --work")
    if fit.get("fit_key") != key:
        raise SystemExit(f"{run} holds a fit of another configuration (config file, --unlearn-args, --forget or "
                         f"--steps changed since): remove {run} or pass another --work")


DEV_PEOPLE = ["George_W_Bush", "Tony_Blair", "Serena_Williams"]  # every default, sweep and ablation is tuned on them
SPLIT_FILE = REPO / "benchmarks" / "people_split.json"
SPLIT_SEED = 2026


def draw_test_people(names: list[str], n: int = 3, seed: int = SPLIT_SEED) -> list[str]:
    """The test people: ``n`` drawn by ``seed`` from the people who are not dev people (sorted first), once,
    before any fit on them; headline numbers are reported on them only (``benchmarks/people_split.json``)."""
    import random

    return random.Random(seed).sample(sorted(set(names) - set(DEV_PEOPLE)), n)


def saved_bytes(fn, *args):
    """``fn(*args)`` and the bytes of the distinct storages autograd saved for its backward (exact, not timed)."""
    import torch

    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn(*args)
    return result, sum(seen.values())


@functools.cache
def git_commit() -> str:
    """The commit of the code that makes a result (``-dirty`` when tracked files other than the results differ
    from it: a benchmark rewriting its own results files does not make its code dirty). Read once, when a
    benchmark first asks (at its start): a commit made while it runs does not relabel the code it loaded."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results")
    return commit + ("-dirty" if changed else "")


def command_line(script: str, argv: list[str] | None) -> str:
    return shlex.join(["python", f"benchmarks/{script}", *(argv if argv is not None else sys.argv[1:])])


def fit_heldout_fraction(run: Path) -> float:
    """The held-out fraction a fit in ``run`` (see :func:`fit_unlearning`) actually used, from its saved
    config, so scoring uses exactly the photos the fit never saw."""
    config = yaml.safe_load((run / "fit" / "version_0" / "config.yaml").read_text())
    return float(config["data"]["init_args"]["heldout_fraction"])


def heldout_by_label(root: str, identities: list[str], image_size: int, fraction: float) -> dict:
    """``{class index: held-out photos}`` for every identity of a base model that has held-out photos."""
    from legato_pl.data import IdentityImages

    data = IdentityImages(root, image_size, fraction, identities=identities)
    return {identities.index(n): data.heldout[n] for n in identities if len(data.heldout[n])}


def with_interval(values: dict, key: str, spec: str = ".3g") -> str:
    """``values[key]`` followed by its 95% interval ``values[key + "_ci"]`` in brackets (when it has one), each
    formatted by ``spec``."""
    if values.get(key + "_ci") is None:
        return f"{values[key]:{spec}}"
    lo, hi = values[key + "_ci"]
    return f"{values[key]:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def misses_estimate(values: dict, key: str, tolerance: float = 1e-6) -> bool:
    """``values[key]`` is an interval (``<metric>_ci``, a ``[lo, hi]`` pair) that does not hold its numeric
    ``values[<metric>]`` up to float rounding; anything else is not judged."""
    value, interval = values.get(key[:-3]) if key.endswith("_ci") else None, values.get(key)
    if not (isinstance(value, (int, float)) and isinstance(interval, (list, tuple)) and len(interval) == 2
            and all(isinstance(v, (int, float)) for v in interval)):
        return False
    return not interval[0] - tolerance <= value <= interval[1] + tolerance


def without_invalid_intervals(result):
    """``result`` without the ``<metric>_ci`` intervals that miss their ``<metric>``: a reused evaluation made before
    the Fréchet-distance interval was re-centred on its estimate (metrics.bootstrap) keeps its value, not its
    interval."""
    if isinstance(result, list):
        return [without_invalid_intervals(v) for v in result]
    if not isinstance(result, dict):
        return result
    return {k: without_invalid_intervals(v) for k, v in result.items() if not misses_estimate(result, k)}


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """Markdown lines of a table (floats with 4 decimals, ints with thousands separators)."""
    def fmt(v) -> str:
        if v is None:
            return ""
        if isinstance(v, bool) or isinstance(v, str):
            return str(v)
        return f"{v:,}" if isinstance(v, int) else f"{v:.4f}"

    return ["| " + " | ".join(header) + " |", "| --- " * len(header) + "|",
            *["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]]
