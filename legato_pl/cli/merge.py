"""``python -m legato_pl merge``: fold a mergeable method into the base UNet and write a plain pipeline.

Adapters are removable: whoever holds the base weights and the artifact can remove them. Where the
method allows it (``lora``, ``full``), ship the merged model instead: nothing is left to remove.
ODE adapters (``legato``, ``residual``) cannot be merged (a nonlinear flow is not a weight change).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from legato_pl.cli.common import Parser, add_artifact_argument, run_parsed
from legato_pl.methods import load_method
from legato_pl.models.base import load_base_model, save_base_model


def merge_artifact(base_model: str, artifact: str, out: str | Path, strength: float = 1.0) -> Path:
    """Write ``base_model`` with the artifact merged into its UNet at ``strength`` to ``out``."""
    base = load_base_model(base_model)
    method = load_method(base.unet, artifact, strength=strength)
    unet = method.merge()
    return save_base_model(out, unet, base.scheduler, base.identities)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m legato_pl merge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base_model", required=True, help="the base model directory the artifact was trained on")
    add_artifact_argument(p, required=True, help="artifact directory of a mergeable method (lora, full)")
    p.add_argument("--out", required=True, help="directory for the merged pipeline")
    p.add_argument("--strength", type=float, default=1.0)
    return p


def _run(a: argparse.Namespace) -> Path:
    out = merge_artifact(a.base_model, a.artifact, a.out, a.strength)
    print(f"wrote {out} (a plain diffusers pipeline: no adapters to remove)")
    return out


def main(argv: Sequence[str] | None = None) -> Path:
    return run_parsed(build_parser(), argv, _run)
