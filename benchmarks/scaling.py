"""Cost of a LEGATO step: Lightning vs a bare PyTorch loop, 32x32 vs 64x64, 1/2/4/8 forgotten people.

    python benchmarks/scaling.py                     # ~15 min on 2 idle CPU cores

Speed and memory do not depend on the weights, so the base is the LFW architecture of
configs/pretrain_lfw.yaml with random weights (built under --work, nothing downloaded). Every
measurement runs in its own child process, one after another, so peak RSS (``ru_maxrss``) is per
configuration; Lightning and bare runs alternate (``--repeats``) so machine noise hits both alike.
Seconds per step are steady state: ``--warmup`` steps are dropped. The adapter and objective are those
of configs/legato_lfw.yaml (hidden 64, Euler 0..1.6 step 0.4, stages up; global batch 8).
Writes benchmarks/results/scaling.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from harness import git_commit

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "faces"


def make_random_base(out: Path, image_size: int, root: Path) -> Path:
    """A base-model directory with the LFW architecture at ``image_size`` and random weights."""
    from diffusers import DDPMScheduler

    from legato_pl.data.folder import scan_identity_folder
    from legato_pl.models.base import build_unet, save_base_model

    if (out / "model_index.json").is_file():
        return out
    unet_cfg = yaml.safe_load((REPO / "configs" / "pretrain_lfw.yaml").read_text())["model"]["init_args"]["unet"]
    names = list(scan_identity_folder(root))
    save_base_model(out, build_unet(unet_cfg, len(names), image_size), DDPMScheduler(), names)
    return out


def worker(a: argparse.Namespace) -> dict:
    """One measurement in this process: steady-state seconds per step and peak RSS."""
    import lightning.pytorch as pl
    import torch

    from legato_pl.data import IdentityDataModule
    from legato_pl.models import UnlearningModule

    torch.manual_seed(0)
    cfg = yaml.safe_load((REPO / "configs" / "legato_lfw.yaml").read_text())["model"]["init_args"]
    module = UnlearningModule(a.base, method=cfg["method"], lr=cfg["lr"], w_trajectory=cfg["w_trajectory"],
                              w_adjacency=cfg["w_adjacency"])
    names = json.loads((Path(a.base) / "identities.json").read_text())
    dm = IdentityDataModule(forget=names[: a.forget_count], root=a.root, image_size=a.image_size,
                            batch_size=a.batch_size)
    stamps: list[float] = []
    total = a.warmup + a.steps
    if a.mode == "lightning":
        class Stamp(pl.Callback):
            def on_train_batch_end(self, *args) -> None:
                stamps.append(time.perf_counter())

        with tempfile.TemporaryDirectory() as logs:
            trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=total, log_every_n_steps=10,
                                 default_root_dir=logs, enable_checkpointing=False, enable_model_summary=False,
                                 limit_val_batches=0,
                                 callbacks=[Stamp()])
            trainer.fit(module, datamodule=dm)
    else:
        dm.setup("fit")
        module.bind_data(dm)
        module.train()
        opt = module.configure_optimizers()
        for i, batch in enumerate(dm.train_dataloader()):
            if i == total:
                break
            loss = module.total_loss(module.compute_losses(dm.on_after_batch_transfer(batch, 0)))
            opt.zero_grad()
            loss.backward()
            module.on_before_optimizer_step(opt)
            opt.step()
            stamps.append(time.perf_counter())
    steady = stamps[a.warmup - 1 :]
    return {"seconds_per_step": (steady[-1] - steady[0]) / (len(steady) - 1),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "trainable_params": sum(p.numel() for p in module.adapters.parameters()),
            "forget_images": sum(len(dm.data.train[n]) for n in dm.forget)}


def measure(base: Path, mode: str, image_size: int, forget_count: int, a: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--base", str(base), "--mode", mode, "--image-size",
           str(image_size), "--forget-count", str(forget_count), "--steps", str(a.steps), "--warmup",
           str(a.warmup), "--root", str(a.root), "--batch-size", str(a.batch_size)]
    print("+", shlex.join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print("  ", result, flush=True)
    return {"mode": mode, "image_size": image_size, "forget_count": forget_count, **result}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--base", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="lightning", choices=["lightning", "bare"], help=argparse.SUPPRESS)
    p.add_argument("--image-size", type=int, default=32, help=argparse.SUPPRESS)
    p.add_argument("--forget-count", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--root", default=str(FACES))
    p.add_argument("--work", default="runs/scaling", help="where the random-weight bases are built")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2, help="alternating Lightning/bare pairs for the overhead")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--forget-counts", type=int, nargs="+", default=[1, 2, 4, 8])
    return p


def main(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a)))
        return {}
    work = Path(a.work)
    bases = {s: make_random_base(work / f"base{s}", s, Path(a.root)) for s in a.sizes}
    small = min(a.sizes)
    overhead = []
    for _ in range(a.repeats):
        overhead += [measure(bases[small], m, small, 1, a) for m in ("lightning", "bare")]
    resolution = [measure(bases[s], "lightning", s, 1, a) for s in a.sizes if s != small]
    identities = [measure(bases[small], "lightning", small, k, a) for k in a.forget_counts if k != 1]
    light = [r["seconds_per_step"] for r in overhead if r["mode"] == "lightning"]
    bare = [r["seconds_per_step"] for r in overhead if r["mode"] == "bare"]
    ratios = [x / y for x, y in zip(light, bare)]
    first = next(r for r in overhead if r["mode"] == "lightning")
    out = {
        "command": shlex.join(["python", "benchmarks/scaling.py", *(argv if argv is not None else sys.argv[1:])]),
        "commit": git_commit(),
        "overhead": {"runs": overhead, "lightning_over_bare": ratios, "median_ratio": statistics.median(ratios)},
        "resolution": [first, *resolution],
        "identities": [first, *identities],
        "note": "random-weight LFW-architecture base; global batch 8 (forget 8 + retain 8 rows per step)",
    }
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scaling.json").write_text(json.dumps(out, indent=2) + "\n")
    row = lambda r, key: f"| {r[key]} | {r['seconds_per_step']:.3f} | {r['peak_rss_mb']:.0f} |"  # noqa: E731
    md = ["# LEGATO step cost", "", f"Command: `{out['command']}`", "",
          "## Lightning vs a bare PyTorch loop (same module, data and step; alternating child processes)", "",
          "| run | mode | s/step | peak RSS MB |", "| --- | --- | --- | --- |",
          *[f"| {i} | {r['mode']} | {r['seconds_per_step']:.3f} | {r['peak_rss_mb']:.0f} |"
            for i, r in enumerate(overhead)], "",
          f"Lightning / bare per pair: {', '.join(f'{x:.3f}' for x in ratios)}; median {out['overhead']['median_ratio']:.3f}",
          "", "## Resolution (1 person forgotten)", "", "| image size | s/step | peak RSS MB |", "| --- | --- | --- |",
          *[row(r, "image_size") for r in out["resolution"]], "",
          f"## People forgotten in one run ({small}x{small})", "", "| forget count | s/step | peak RSS MB |",
          "| --- | --- | --- |", *[row(r, "forget_count") for r in out["identities"]], "", out["note"]]
    (out_dir / "scaling.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return out


if __name__ == "__main__":
    main()
