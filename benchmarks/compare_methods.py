"""Compare unlearning methods on the LFW setup: same data, objective, seeds and step budget.

    python benchmarks/compare_methods.py --base runs/lfw/base --steps 300

Methods: legato, legato_no_traj (w_trajectory 0), residual, lora, full. For each: a fit through the
CLI (configs/legato_lfw.yaml with --model.init_args.method), then samples of the forget person and
retain people from the same seeds as the base model, and every metric of DESIGN.md. Writes
benchmarks/results/compare_methods.{json,md} and compare_methods_tradeoff.png.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from lfw_unlearning import pick_retain, run_cli, seconds_per_step

from legato_pl.data import IdentityImages
from legato_pl.metrics import UnlearningMetrics, load_encoder
from legato_pl.models.base import load_base_model
from legato_pl.models.methods import load_method_weights
from legato_pl.sampling import sample

REPO = Path(__file__).resolve().parents[1]
METHODS = {
    "legato": ["--model.init_args.method", "legato"],
    "legato_no_traj": ["--model.init_args.method", "legato", "--model.init_args.w_trajectory", "0"],
    "residual": ["--model.init_args.method", "residual"],
    "lora": ["--model.init_args.method", "lora"],
    "full": ["--model.init_args.method", "full", "--model.init_args.lr", "1e-4"],
}


def tradeoff_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for name, r in results.items():
        ax.scatter(r.get("FD_pre", float("nan")), r.get("acc_forget", float("nan")), label=name)
    ax.set_xlabel("FD_pre (retain, identity embeddings)  lower = better preserved")
    ax.set_ylabel("acc_forget  lower = more forgotten")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="runs/lfw/base")
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "faces"))
    p.add_argument("--forget", default="George_W_Bush")
    p.add_argument("--work", default="runs/lfw/compare")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--unlearn-config", default="configs/legato_lfw.yaml")
    p.add_argument("--unlearn-args", default="", help="extra CLI overrides for every fit (quoted)")
    p.add_argument("--retain-identities", type=int, default=10)
    p.add_argument("--per-identity", type=int, default=16)
    p.add_argument("--steps-ddim", type=int, default=25)
    p.add_argument("--guidance", type=float, default=3.0)
    a = p.parse_args(argv)
    work, base_dir = Path(a.work), Path(a.base)
    base = load_base_model(base_dir)
    size = base.unet.config.sample_size
    data = IdentityImages(a.root, size, 0.2, identities=base.identities)
    real = {base.identities.index(n): data.heldout[n] for n in base.identities if len(data.heldout[n])}
    forget = base.identities.index(a.forget)
    people = [forget] + [base.identities.index(n) for n in pick_retain(base.identities, a.forget, a.retain_identities)]
    labels = torch.tensor(people).repeat_interleave(a.per_identity)
    kwargs = dict(null_class=base.null_class, guidance_scale=a.guidance, num_inference_steps=a.steps_ddim, seed=0)
    before = sample(base.unet.eval(), base.scheduler, labels, **kwargs)
    encoder = load_encoder("dlib")
    results: dict[str, dict] = {}
    for name in a.methods:
        run = work / name
        fit = run_cli(a.unlearn_config, [
            *METHODS[name], "--model.init_args.base_model", str(base_dir),
            "--model.init_args.output_dir", str(run / "weights"), "--data.init_args.root", a.root,
            "--data.init_args.forget", a.forget, "--trainer.max_steps", str(a.steps),
            "--trainer.logger.init_args.save_dir", str(run), "--trainer.logger.init_args.name", "fit",
            "--trainer.logger.init_args.version", "0", "--trainer.log_every_n_steps", "1",
            "--trainer.callbacks", "[]", *shlex.split(a.unlearn_args)])
        trained = load_method_weights(load_base_model(base_dir).unet, name.split("_")[0], run / "weights")
        after = sample(trained.eval(), base.scheduler, labels, **kwargs)
        metrics = UnlearningMetrics(encoder, real, forget_labels=[forget], face_rate=True)
        metrics.update(before, after, labels)
        unet_params = sum(p.numel() for p in base.unet.parameters())
        trainable = sum(t.numel() for f in (run / "weights").rglob("*.safetensors") for t in load_file(f).values())
        results[name] = {"trainable_params": trainable, "unet_params": unet_params,
                         "seconds_per_step": seconds_per_step(run / "fit" / "version_0"),
                         "peak_rss_mb": fit["peak_rss_mb"], "wall_time_s": fit["wall_time_s"], **metrics.compute()}
    full_step = results.get("full", {}).get("seconds_per_step")
    for r in results.values():
        r["step_time_ratio_vs_full"] = r["seconds_per_step"] / full_step if full_step else None
    out = {"command": shlex.join(["python", "benchmarks/compare_methods.py", *(argv or sys.argv[1:])]),
           "forget": a.forget, "steps": a.steps, "methods": results}
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare_methods.json").write_text(json.dumps(out, indent=2) + "\n")
    keys = ["trainable_params", "step_time_ratio_vs_full", "peak_rss_mb", "acc_forget", "acc_retain",
            "ID_forget", "ID_retain", "ID_real_forget", "FD_pre", "dFD_real", "face_rate"]
    fmt = lambda v: "" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:.4f}")  # noqa: E731
    md = [f"# Methods compared ({a.forget}, {a.steps} steps each)", "", f"Command: `{out['command']}`", "",
          "| method | " + " | ".join(keys) + " |", "| --- " * (len(keys) + 1) + "|"]
    md += ["| " + name + " | " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for name, r in results.items()]
    (out_dir / "compare_methods.md").write_text("\n".join(md) + "\n")
    tradeoff_plot(results, out_dir / "compare_methods_tradeoff.png")
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
