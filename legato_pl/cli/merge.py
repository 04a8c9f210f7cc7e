"""``python -m legato_pl merge``: fold a mergeable method into the base UNet and write a plain pipeline.

Adapters are removable: whoever holds the base weights and the artifact can remove them. Where the
method allows it (``lora``, ``full``), ship the merged model instead: nothing is left to remove.
ODE adapters (``legato``, ``residual``) cannot be merged (a nonlinear flow is not a weight change).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

from legato_pl.cli.common import Parser, add_artifact_argument, run_parsed
from legato_pl.methods import load_method
from legato_pl.models.base import IDENTITIES_FILE, load_base_model, save_base_model
from legato_pl.models.text_to_image import load_text_to_image


def merge_artifact(base_model: str, artifact: str, out: str | Path, strength: float = 1.0) -> Path:
    """Write ``base_model`` with the artifact merged into its UNet at ``strength`` to ``out``: the whole pipeline
    (an SD / SDXL base keeps its text encoders, tokenizers, VAE and scheduler), loadable with
    ``DiffusionPipeline.from_pretrained``."""
    base = load_base_model(base_model)
    if base.text is None:
        unet = load_method(base.unet, artifact, strength=strength).merge()
        return save_base_model(out, unet, base.scheduler, base.identities)
    pipe, _ = load_text_to_image(base_model)
    load_method(pipe.unet, artifact, strength=strength).merge()  # in place: pipe.unet is the merged UNet
    pipe.save_pretrained(str(out))
    identities = Path(base_model) / IDENTITIES_FILE
    if identities.is_file():
        shutil.copy(identities, Path(out) / IDENTITIES_FILE)
    return Path(out)


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
