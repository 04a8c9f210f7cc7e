"""Compare unlearning methods on the LFW setup: same data, objective, seeds and step budget.

    python benchmarks/compare_methods.py --base runs/lfw/base --steps 200

Methods: legato, legato_no_traj (w_trajectory 0), residual, lora, full. For each: a fit through the
CLI (configs/legato_lfw.yaml with --model.init_args.method, the same seed, data and step budget), then
samples of the forget person and retain people from the same seeds as the base model, at each
--strengths (every method has the knob: ODE integration length for legato/residual, a scaled weight
change for lora/full), and every metric of DESIGN.md. Writes benchmarks/results/compare_methods.{json,md}
and compare_methods_tradeoff.png (acc_forget vs FD_pre, one curve per method over strength).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from harness import add_unlearning_args, command_line, fit_unlearning, pick_retain
from safetensors.torch import load_file

from legato_pl.data import IdentityImages
from legato_pl.metrics import UnlearningMetrics, load_encoder
from legato_pl.models.base import load_base_model
from legato_pl.models.methods import load_method_weights
from legato_pl.sampling import sample

METHODS = {
    "legato": ["--model.init_args.method", "legato"],
    "legato_no_traj": ["--model.init_args.method", "legato", "--model.init_args.w_trajectory", "0"],
    "residual": ["--model.init_args.method", "residual"],
    "lora": ["--model.init_args.method", "lora"],
    "full": ["--model.init_args.method", "full", "--model.init_args.lr", "1e-4"],
}


def tradeoff_plot(results: dict, path: Path) -> None:
    """acc_forget against FD_pre, one curve per method over strength (0 = the shared base point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    for name, r in results.items():
        curve = r["curve"]
        ax.plot([c["FD_pre"] for c in curve], [c["acc_forget"] for c in curve], marker="o", label=name)
        last = curve[-1]
        ax.annotate(f"{last['strength']:g}", (last["FD_pre"], last["acc_forget"]), fontsize=6)
    ax.set_xlabel("FD_pre on retain people (lower = better preserved)")
    ax.set_ylabel("acc_forget (lower = more forgotten)")
    ax.set_title("forgetting vs preservation over strength", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_unlearning_args(p, work="runs/lfw/compare")
    p.add_argument("--forget", default="George_W_Bush")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--strengths", type=float, nargs="+", default=[0.5, 1.0],
                   help="evaluated strengths (0, the base, is always included)")
    p.add_argument("--fid", action=argparse.BooleanOptionalAction, default=True)
    a = p.parse_args(argv)
    work, base_dir = Path(a.work), Path(a.base)
    base = load_base_model(base_dir)
    size = base.unet.config.sample_size
    data = IdentityImages(a.root, size, 0.2, identities=base.identities)
    real = {base.identities.index(n): data.heldout[n] for n in base.identities if len(data.heldout[n])}
    forget = base.identities.index(a.forget)
    retain = [base.identities.index(n) for n in pick_retain(base.identities, a.forget, a.retain_identities)]
    labels = torch.cat([torch.full((a.forget_samples,), forget), torch.tensor(retain).repeat_interleave(a.per_identity)])
    kwargs = dict(null_class=base.null_class, guidance_scale=a.guidance, num_inference_steps=a.steps_ddim, seed=0)
    t0 = time.perf_counter()
    before = sample(base.unet.eval(), base.scheduler, labels, **kwargs)
    sampling_s = time.perf_counter() - t0
    encoder = load_encoder("dlib")
    metrics = UnlearningMetrics(encoder, {k: v for k, v in real.items()}, forget_labels=[forget], face_rate=True,
                                fid=a.fid)
    metrics.update(before, before, labels)
    base_row = {"strength": 0.0, **metrics.compute()}
    unet_params = sum(p.numel() for p in base.unet.parameters())
    results: dict[str, dict] = {}
    for name in a.methods:
        run = work / name
        fit = fit_unlearning(a, a.forget, run, METHODS[name])
        method = name.split("_")[0]
        curve = [base_row]
        for s in a.strengths:
            student = load_method_weights(load_base_model(base_dir).unet, method, run / "weights", strength=s)
            after = sample(student.eval(), base.scheduler, labels, **kwargs)
            metrics.reset()
            metrics.update(before, after, labels)
            curve.append({"strength": s, **metrics.compute()})
        trainable = sum(t.numel() for f in (run / "weights").rglob("*.safetensors") for t in load_file(f).values())
        results[name] = {"trainable_params": trainable, "unet_params": unet_params,
                         "trainable_fraction": trainable / unet_params,
                         "seconds_per_step": fit["seconds_per_step"], "peak_rss_mb": fit["peak_rss_mb"], "wall_time_s": fit["wall_time_s"],
                         **curve[-1], "curve": curve}
    full_step = results.get("full", {}).get("seconds_per_step")
    for r in results.values():
        r["step_time_ratio_vs_full"] = r["seconds_per_step"] / full_step if full_step else None
    out = {"command": command_line("compare_methods.py", argv),
           "forget": a.forget, "steps": a.steps, "retain_evaluated": [base.identities[k] for k in retain],
           "samples": {"forget": a.forget_samples, "per_retain_identity": a.per_identity},
           "base_sampling_s": sampling_s, "methods": results}
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare_methods.json").write_text(json.dumps(out, indent=2) + "\n")
    keys = ["trainable_params", "trainable_fraction", "seconds_per_step", "step_time_ratio_vs_full", "peak_rss_mb",
            "acc_forget", "acc_retain", "ID_forget", "ID_retain", "ID_real_forget", "FD_pre", "dFD_real",
            "FID_pre", "dFID_real", "face_rate"]
    fmt = lambda v: "" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:.4f}")  # noqa: E731
    md = [f"# Methods compared ({a.forget}, {a.steps} steps each, strength 1)", "", f"Command: `{out['command']}`", "",
          f"Base model (strength 0): acc_forget {fmt(base_row['acc_forget'])}, acc_retain {fmt(base_row['acc_retain'])},"
          f" face_rate {fmt(base_row.get('face_rate'))}", "",
          "| method | " + " | ".join(keys) + " |", "| --- " * (len(keys) + 1) + "|"]
    md += ["| " + name + " | " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for name, r in results.items()]
    md += ["", "## Over strength (acc_forget / acc_retain / FD_pre)", "",
           "| method | " + " | ".join(f"s={s:g}" for s in [0.0, *a.strengths]) + " |", "| --- " * (len(a.strengths) + 2) + "|"]
    md += ["| " + name + " | " + " | ".join(f"{c['acc_forget']:.3f} / {c['acc_retain']:.3f} / {c['FD_pre']:.4f}"
                                           for c in r["curve"]) + " |" for name, r in results.items()]
    md += ["", "Trade-off plot: `compare_methods_tradeoff.png`."]
    (out_dir / "compare_methods.md").write_text("\n".join(md) + "\n")
    tradeoff_plot(results, out_dir / "compare_methods_tradeoff.png")
    print("\n".join(md))
    return out


if __name__ == "__main__":
    main()
