"""LFW unlearning benchmark: base model -> LEGATO unlearning -> every metric, before and after.

    python benchmarks/lfw_unlearning.py --base runs/lfw/base

Reuses the base model at --base if it exists, otherwise trains it with configs/pretrain_lfw.yaml
(~75-90 min on 2 idle CPU cores). Unlearning (configs/legato_lfw.yaml, 300 steps) takes ~10-20 min,
evaluation ~5-15 min. Writes benchmarks/results/lfw_unlearning.{json,md} and a strength grid PNG.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from legato_pl.adapters import load_adapters
from legato_pl.evaluation import SamplingSettings, strength_curve
from legato_pl.metrics import UnlearningMetrics, load_encoder
from legato_pl.models.base import load_base_model
from legato_pl.sampling import sample

from harness import (
    add_pretrain_and_fit_args,
    fit_heldout_fraction,
    git_commit,
    heldout_by_label,
    pick_retain,
    run_cli,
    seconds_per_step,
)

REPO = Path(__file__).resolve().parents[1]


def table(base: dict, after: dict) -> str:
    lines = ["| metric | base (strength 0) | unlearned (strength 1) |", "| --- | --- | --- |"]
    for key in sorted(set(base) | set(after)):
        fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
        lines.append(f"| {key} | {fmt(base.get(key))} | {fmt(after.get(key))} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="runs/lfw/base", help="base model directory (trained if missing)")
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "faces"))
    add_pretrain_and_fit_args(p, "lfw_unlearning", "runs/lfw/benchmark", "configs/pretrain_lfw.yaml",
                              "configs/legato_lfw.yaml")
    p.add_argument("--retain-identities", type=int, default=10, help="retain people sampled in evaluation")
    p.add_argument("--per-identity", type=int, default=16, help="samples per forget/retain person")
    p.add_argument("--base-per-identity", type=int, default=4, help="samples per person for base accuracy")
    p.add_argument("--fid", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--steps-ddim", type=int, default=25)
    p.add_argument("--guidance", type=float, default=3.0)
    return p


def main(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    torch.manual_seed(0)
    base_dir, work = Path(a.base), Path(a.work)
    result: dict = {"command": shlex.join(["python", "benchmarks/lfw_unlearning.py", *(argv or sys.argv[1:])]),
                    "commit": git_commit()}

    if not (base_dir / "model_index.json").is_file():
        result["pretrain"] = run_cli(a.pretrain_config, ["--model.init_args.output_dir", str(base_dir),
                                                         "--data.init_args.root", a.root,
                                                         *shlex.split(a.pretrain_args)])
    fit = run_cli(a.unlearn_config, [
        "--model.init_args.base_model", str(base_dir), "--model.init_args.output_dir", str(work / "adapters"),
        "--data.init_args.root", a.root, "--data.init_args.forget", a.forget, "--trainer.max_steps", str(a.steps),
        "--trainer.logger.init_args.save_dir", str(work), "--trainer.logger.init_args.name", "fit",
        "--trainer.logger.init_args.version", "0", "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "0",
        *shlex.split(a.unlearn_args)])
    fit["seconds_per_step"] = seconds_per_step(work / "fit" / "version_0")
    fit["steps"] = a.steps

    base = load_base_model(base_dir)
    unet = base.unet.eval()
    size = unet.config.sample_size
    real = heldout_by_label(a.root, base.identities, size, fit_heldout_fraction(work))  # photos the fit never saw
    encoder = load_encoder("dlib")
    settings = SamplingSettings(a.per_identity, a.guidance, a.steps_ddim, seed=0)

    # the base model itself: is the conditioned person recognisable? (all people, strength 0)
    all_labels = torch.arange(len(base.identities)).repeat_interleave(a.base_per_identity)
    t0 = time.perf_counter()
    base_samples = sample(unet, base.scheduler, all_labels, null_class=base.null_class, guidance_scale=a.guidance,
                          num_inference_steps=a.steps_ddim, seed=10_000)
    base_metrics = UnlearningMetrics(encoder, real, forget_labels=[])
    base_metrics.update(base_samples, base_samples, all_labels)
    result["base_model"] = {"acc_samples": base_metrics.compute()["acc_retain"],
                            "samples_per_identity": a.base_per_identity, "identities": len(base.identities),
                            "sampling_s": time.perf_counter() - t0}

    # unlearned: strength sweep on the forget person and a fixed set of retain people
    adapters = load_adapters(unet, work / "adapters")
    forget_label = base.identities.index(a.forget)
    retain_names = pick_retain(base.identities, a.forget, a.retain_identities)
    people = [forget_label] + [base.identities.index(n) for n in retain_names]
    labels = torch.tensor(people).repeat_interleave(a.per_identity)
    metrics = UnlearningMetrics(encoder, real, forget_labels=[forget_label], face_rate=True)
    t0 = time.perf_counter()
    curve = strength_curve(unet, base.scheduler, adapters, labels, base.null_class, metrics, settings=settings)
    eval_s = time.perf_counter() - t0
    before, after = curve.samples[0.0], curve.samples[1.0]
    result["base"], result["unlearned"] = curve.rows[0], curve.rows[-1]
    if a.fid:
        fid = UnlearningMetrics(encoder, {k: v for k, v in real.items() if k in people},
                                forget_labels=[forget_label], fid=True)
        fid.update(before, after, labels)
        fid_keys = {k: v for k, v in fid.compute().items() if "FID" in k}
        result["unlearned"].update(fid_keys)
        result["base"].update({k: 0.0 for k in fid_keys})  # strength 0 is the base model exactly
    result["curve"] = curve.rows

    # references for reading the numbers: two different people, and two seed sets of the base model
    with torch.no_grad():
        cents = torch.stack([torch.nn.functional.normalize(encoder(v).mean(0), dim=0) for v in real.values()])
    sims = cents @ cents.T
    off = ~torch.eye(len(cents), dtype=torch.bool)
    retain_mask = labels != forget_label
    reseed = sample(unet, base.scheduler, labels[retain_mask], null_class=base.null_class,
                    guidance_scale=a.guidance, num_inference_steps=a.steps_ddim, seed=50_000,
                    method=adapters, strength=0.0)
    ref = UnlearningMetrics(encoder, real, forget_labels=[])
    ref.update(before[retain_mask], reseed, labels[retain_mask])
    result["reference"] = {"centroid_similarity_different_people": sims[off].mean().item(),
                           "FD_between_base_seed_sets": ref.compute()["FD_pre"]}

    result.update({
        "forget": a.forget, "retain_evaluated": retain_names, "samples_per_identity": a.per_identity,
        "trainable_params": sum(p.numel() for p in adapters.parameters()),
        "unet_params": sum(p.numel() for p in unet.parameters()),
        "fit": fit, "evaluation_s": eval_s, "encoder": "dlib", "image_size": size,
        "sampling": {"scheduler": "DDIM", "steps": a.steps_ddim, "guidance_scale": a.guidance},
    })
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    grid = torch.stack([torch.stack([curve.samples[s][labels == c][:4] for c in people]).flatten(0, 1)
                        for s in curve.samples])
    save_image(grid.flatten(0, 1) * 0.5 + 0.5, out / f"{a.name}_grid.png", nrow=grid.shape[1])
    curve_lines = ["| strength | " + " | ".join(k for k in curve.rows[0] if k != "strength") + " |"]
    curve_lines.append("| --- " * len(curve.rows[0]) + "|")
    for row in curve.rows:
        curve_lines.append("| " + " | ".join(f"{v:.4f}" for v in row.values()) + " |")
    md = [f"# LFW unlearning ({a.forget})", "", f"Command: `{result['command']}`", "",
          table(result["base"], result["unlearned"]), "",
          f"- base model: identity accuracy of its samples {result['base_model']['acc_samples']:.3f} "
          f"({len(base.identities)} people, chance {1 / len(base.identities):.3f})",
          f"- trainable parameters {result['trainable_params']:,} vs UNet {result['unet_params']:,}",
          f"- unlearning: {a.steps} steps, {fit['seconds_per_step']:.2f} s/step, wall {fit['wall_time_s']:.0f} s, "
          f"peak RSS {fit['peak_rss_mb']:.0f} MB",
          f"- references: centroid similarity of different people "
          f"{result['reference']['centroid_similarity_different_people']:.4f}; FD between two base seed sets "
          f"{result['reference']['FD_between_base_seed_sets']:.4f}", "", "## Strength curve", "", *curve_lines, "",
          f"Grid: `{a.name}_grid.png` (rows: strengths; first 4 columns: {a.forget})."]
    (out / f"{a.name}.md").write_text("\n".join(md) + "\n")
    print(json.dumps({k: result[k] for k in ("base", "unlearned", "base_model")}, indent=1))
    return result


if __name__ == "__main__":
    main()
