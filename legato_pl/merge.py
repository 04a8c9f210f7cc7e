"""``python -m legato_pl merge``: fold a mergeable method into the base UNet and write a plain pipeline.

Adapters are removable: whoever holds the base weights and the artifact can detach them. Where the
method allows it (``lora``, ``full``), ship the merged model instead: nothing is left to remove.
ODE adapters (``legato``, ``residual``) cannot be merged (a nonlinear flow is not a weight change).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from legato_pl.methods import load_method
from legato_pl.models.base import load_base_model, save_base_model


def merge_artifact(base_model: str, adapters: str, out: str | Path, strength: float = 1.0) -> Path:
    """Write ``base_model`` with the artifact merged into its UNet at ``strength`` to ``out``."""
    base = load_base_model(base_model)
    method = load_method(base.unet, adapters, strength=strength)
    unet = method.merge()
    return save_base_model(out, unet, base.scheduler, base.identities)


def merge_main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m legato_pl merge", description=__doc__)
    p.add_argument("--base_model", required=True)
    p.add_argument("--adapters", required=True, help="artifact of a mergeable method (lora, full)")
    p.add_argument("--out", required=True, help="directory for the merged pipeline")
    p.add_argument("--strength", type=float, default=1.0)
    a = p.parse_args(argv)
    out = merge_artifact(a.base_model, a.adapters, a.out, a.strength)
    print(f"wrote {out} (a plain diffusers pipeline: no adapters to remove)")
    return out
