"""``python -m legato_pl sample``: image grids of named people at chosen strengths (without an artifact: the base)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.utils import save_image

from legato_pl.cli.common import Parser, add_artifact_argument, add_device_argument, check_device, run_parsed
from legato_pl.errors import LegatoInputError
from legato_pl.methods import load_method
from legato_pl.models.base import load_base_model
from legato_pl.sampling import sample


def sample_grid(
    base_model: str,
    identities: list[str],
    artifact: str | None = None,
    strengths: Sequence[float] | None = None,
    per_identity: int = 4,
    seed: int = 0,
    guidance_scale: float = 3.0,
    steps: int = 25,
    device: str = "cpu",
) -> torch.Tensor:
    """``[len(strengths), len(identities) * per_identity, C, H, W]``: rows share their seeds.

    ``artifact`` is the directory of any method (its strength knob is swept; default strengths 0 and 1);
    without it the base model is drawn (one row, strength 0). An artifact trained on top of earlier requests
    holds them (a stack): they are applied at strength 1 in every row.
    """
    if strengths is None:
        strengths = [0.0, 1.0] if artifact else [0.0]
    if artifact is None and any(s != 0.0 for s in strengths):
        raise LegatoInputError("strengths other than 0 need --artifact (without one the base model is drawn)")
    device = check_device(device)
    base = load_base_model(base_model)
    base.use_identities(identities, f"base model {base_model}")
    unet = base.unet.eval().to(device)
    base.conditioning.to(device)
    method = load_method(unet, artifact) if artifact else None
    labels = torch.tensor([base.identities.index(n) for n in identities]).repeat_interleave(per_identity)
    rows = [sample(unet, base.scheduler, labels, conditioning=base.conditioning, guidance_scale=guidance_scale,
                   num_inference_steps=steps, seed=seed, method=method, strength=s if method else None).cpu()
            for s in strengths]
    return torch.stack(rows)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m legato_pl sample", description=__doc__)
    p.add_argument("--base_model", required=True,
                   help="base model: a DDPMPipeline directory + identities.json, or a Stable Diffusion directory / hub id")
    p.add_argument("--identities", required=True, nargs="+",
                   help="person names: as in identities.json, or any name for a text-to-image model (put into its prompts)")
    add_artifact_argument(p, required=False, help="artifact directory written by fit, any method (omit: the base model)")
    p.add_argument("--strengths", type=float, nargs="+", default=None,
                   help="one row per strength (default: 0 1 with an artifact, 0 without)")
    p.add_argument("--per_identity", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance_scale", type=float, default=3.0)
    p.add_argument("--steps", type=int, default=25, help="DDIM steps")
    p.add_argument("--out", default="samples.png", help="PNG: one row per strength")
    add_device_argument(p)
    return p


def _run(a: argparse.Namespace) -> Path:
    grid = sample_grid(a.base_model, a.identities, a.artifact, a.strengths, a.per_identity, a.seed,
                       a.guidance_scale, a.steps, a.device)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid.flatten(0, 1) * 0.5 + 0.5, out, nrow=grid.shape[1])
    print(f"wrote {out} ({len(grid)} row(s): strengths {a.strengths or 'default'})")
    return out


def main(argv: Sequence[str] | None = None) -> Path:
    return run_parsed(build_parser(), argv, _run)
