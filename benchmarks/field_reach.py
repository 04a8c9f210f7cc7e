"""Where does an artifact act? Its effect on the forget person's photos under the conditions an attacker can use.

For each artifact, the person's training photos are noised (fixed seeds) and the UNet's prediction is taken with
the artifact at strength 0 (the base) and 1 under: the person's own condition, the null class, another person's,
the condition the audit's inversion finds on the base, and the one it finds against the artifact itself (300 Adam
steps from the null class, as ``audit``). Per condition: the artifact's relative action ``|eps_1 - eps_0| /
|eps_0|``, the denoising loss at strength 0 and 1, and the distance from the person's own row. An erasure that acts
only where the name goes leaves the inverted condition untouched, whatever it does to the name. Class-conditional
bases (the conditions are class rows).

    python benchmarks/field_reach.py --forget George_W_Bush \
        --artifacts legato_path_faces=runs/lfw/path_faces/George_W_Bush/legato_path_faces/weights
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from legato_pl.audit.inversion import invert_condition
from legato_pl.data import IdentityImages
from legato_pl.methods import load_method
from legato_pl.models.base import load_base_model
from legato_pl.models.diffusion import add_noise, diffusion_target, step_generator

from harness import command_line, git_commit, markdown_table, write_report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="runs/lfw/base")
    p.add_argument("--root", default="../shared/data/faces")
    p.add_argument("--forget", default="George_W_Bush")
    p.add_argument("--other", default="Tony_Blair", help="another person whose condition is probed")
    p.add_argument("--artifacts", nargs="+", required=True, metavar="NAME=DIR")
    p.add_argument("--inversion-steps", type=int, default=300)
    p.add_argument("--inversion-lr", type=float, default=5e-3)
    p.add_argument("--batches", type=int, default=4, help="noised batches of 16 photos per measurement")
    p.add_argument("--heldout-fraction", type=float, default=0.2)
    p.add_argument("--out", default="benchmarks/results/field_reach")
    return p


def reach(unet, method, cond, scheduler, photos: Tensor, condition: Tensor, batches: int) -> dict[str, float]:
    """Mean over fixed noised batches of the artifact's relative action and the loss at strength 0 and 1."""
    sums = {"action": 0.0, "loss_base": 0.0, "loss_unlearned": 0.0}
    for k in range(batches):
        x0 = photos[:16]
        x_t, noise, t = add_noise(scheduler, x0, step_generator(123, k, "cpu"))
        wanted = diffusion_target(scheduler, x0, noise, t)
        c = condition.reshape(1, -1).expand(len(x_t), -1)
        preds = []
        for strength in (0.0, 1.0):
            method.strength = strength
            with torch.no_grad():
                preds.append(cond.predict(unet, x_t, t, cond=c))
        sums["action"] += ((preds[1] - preds[0]).norm() / preds[0].norm()).item()
        sums["loss_base"] += ((preds[0] - wanted) ** 2).mean().item()
        sums["loss_unlearned"] += ((preds[1] - wanted) ** 2).mean().item()
    return {k: v / batches for k, v in sums.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    a = parser.parse_args(argv)
    if any("=" not in s for s in a.artifacts):
        parser.error(f"--artifacts takes NAME=DIR, got {a.artifacts}")
    artifacts = dict(s.split("=", 1) for s in a.artifacts)

    def fresh(artifact: str | None):
        base = load_base_model(a.base)
        unet = base.unet.eval()
        return base, unet, load_method(unet, artifact, strength=1.0) if artifact else None

    base, unet, _ = fresh(None)
    cond = base.conditioning
    if getattr(unet, "class_embedding", None) is None:
        raise SystemExit(f"error: {a.base} is not a class-conditional base: the conditions probed are class rows")
    base.use_identities([a.forget, a.other], f"base model {a.base}")
    data = IdentityImages(a.root, unet.config.sample_size, a.heldout_fraction, identities=base.identities)
    photos = data.train[a.forget]
    latents = cond.to_latents(photos)  # what the UNet denoises (the photos themselves for a pixel model)
    rows = unet.class_embedding.weight.detach().clone()
    own = rows[base.identities.index(a.forget)]

    def invert(u) -> Tensor:
        return invert_condition(u, base.scheduler, photos, cond.soft_init(u), steps=a.inversion_steps,
                                lr=a.inversion_lr, seed=0, conditioning=cond).embedding

    on_base = invert(unet)
    out = {"command": command_line("field_reach.py", argv), "commit": git_commit(), "forget": a.forget,
           "other": a.other, "artifacts": {}}
    for name, artifact in artifacts.items():
        _, u, method = fresh(artifact)
        conditions = {"own": own, "null": rows[base.null_class],
                      f"other ({a.other})": rows[base.identities.index(a.other)],
                      "inverted on the base": on_base, "inverted against the artifact": invert(u)}
        out["artifacts"][name] = {"path": artifact, "conditions": {
            c: {**reach(u, method, cond, base.scheduler, latents, v, a.batches),
                "distance_from_own": ((v - own).norm() / own.norm()).item()} for c, v in conditions.items()}}
        write(a, out)
    return write(a, out)


def write(a: argparse.Namespace, out: dict) -> dict:
    md = [f"# Where the artifact acts: {out['forget']}'s photos under each condition", "",
          f"Command: `{out['command']}` (commit {out['commit']})", "",
          "action: |eps(strength 1) - eps(strength 0)| / |eps(strength 0)| on the person's noised training photos; "
          "losses: denoising MSE at strength 0 (the base) and 1; distance: |c - own row| / |own row|.", ""]
    for name, r in out["artifacts"].items():
        md += [f"## {name}", ""]
        md += markdown_table(["condition", "action", "loss base", "loss unlearned", "distance from own"],
                             [[c, f"{v['action']:.4f}", f"{v['loss_base']:.4f}", f"{v['loss_unlearned']:.4f}",
                               f"{v['distance_from_own']:.2f}"] for c, v in r["conditions"].items()])
        md.append("")
    return write_report(a.out, "field_reach", out, md)


if __name__ == "__main__":
    main()
