"""``python -m legato_pl sample``: image grids for named identities at named adapter strengths."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import save_image

from legato_pl.adapters import load_adapters
from legato_pl.data.datamodule import check_names
from legato_pl.errors import LegatoInputError
from legato_pl.methods import load_method
from legato_pl.models.base import load_base_model
from legato_pl.sampling import sample


def sample_grid(
    base_model: str,
    identities: list[str],
    adapters: str | None = None,
    strengths: list[float] = (0.0, 1.0),
    per_identity: int = 4,
    seed: int = 0,
    guidance_scale: float = 3.0,
    steps: int = 25,
    previous_adapters: list[str] = (),
) -> torch.Tensor:
    """``[len(strengths), len(identities) * per_identity, C, H, W]``: rows share their seeds.

    ``adapters`` is the artifact of any method (its strength knob is swept); ``previous_adapters``
    (earlier removal requests, ODE adapters, in order) are applied at strength 1 in every row.
    """
    if adapters is None and any(s != 0.0 for s in strengths):
        raise LegatoInputError("strengths other than 0 need --adapters")
    base = load_base_model(base_model)
    if base.text is not None:  # a text-to-image model draws any name: it goes into the prompt templates
        base.identities = base.text.identities = list(identities)
    check_names(identities, base.identities, f"base model {base_model}")
    unet = base.unet.eval()
    for path in previous_adapters:
        load_adapters(unet, path, strength=1.0)
    ada = load_method(unet, adapters) if adapters else None
    labels = torch.tensor([base.identities.index(n) for n in identities]).repeat_interleave(per_identity)
    rows = []
    for s in strengths:
        rows.append(sample(unet, base.scheduler, labels, conditioning=base.conditioning, guidance_scale=guidance_scale,
                           num_inference_steps=steps, seed=seed, adapters=ada, strength=s if ada else None))
    return torch.stack(rows)


def sample_main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m legato_pl sample", description=__doc__)
    p.add_argument("--base_model", required=True,
                   help="base model: a DDPMPipeline directory + identities.json, or a Stable Diffusion directory / hub id")
    p.add_argument("--identities", required=True, nargs="+",
                   help="person names: as in identities.json, or any name for a text-to-image model (put into its prompts)")
    p.add_argument("--adapters", help="directory written by fit, any method (omit for the base model only)")
    p.add_argument("--previous_adapters", nargs="+", default=[],
                   help="adapters of earlier requests (fit with model.previous_adapters), applied at strength 1")
    p.add_argument("--strengths", type=float, nargs="+", default=[0.0, 1.0])
    p.add_argument("--per_identity", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance_scale", type=float, default=3.0)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--out", default="samples.png", help="PNG: one row per strength")
    a = p.parse_args(argv)
    grid = sample_grid(a.base_model, a.identities, a.adapters, a.strengths, a.per_identity, a.seed,
                       a.guidance_scale, a.steps, a.previous_adapters)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid.flatten(0, 1) * 0.5 + 0.5, out, nrow=grid.shape[1])
    print(f"wrote {out} (rows: strengths {a.strengths})")
    return out
