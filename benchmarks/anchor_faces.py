"""Does the base draw its anchor concept, and do erased samples stay faces? MTCNN face probability of prompts.

    python benchmarks/anchor_faces.py --base runs/t2i/base --fits runs/t2i/benchmark \
        --out benchmarks/results/anchor_faces.json

The forget targets are built from the frozen base's prediction for the anchor prompt (``anchor_prompt``:
"a person" by default, ``""`` the unconditional prompt). A base that never saw the anchor concept draws
noise for it, and the target then pulls the person toward noise: nearest-centroid accuracy falls to 0
and every sample counts as *moved*, yet nothing is a face any more. This measures that directly: the
mean face probability MTCNN (weights shipped with facenet-pytorch, offline) gives the samples (same seeds;
0 where it finds no face; LFW crops score ~1, noise 0), with a bootstrap 95% interval, for

- each ``--anchor-prompts`` on the base;
- the forget person's name (``--forget``, the training templates) on the base and, at strength 1, on
  every fit directory in ``--fits`` (a ``benchmarks/t2i_lfw.py`` work directory: ``weights/`` inside).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch
import yaml

from legato_pl.methods import load_method
from legato_pl.metrics.bootstrap import mean_ci
from legato_pl.metrics.faces import FaceRate
from legato_pl.models.base import load_base_model
from legato_pl.sampling import sample

from harness import git_commit


def face_prob(detector: FaceRate, images: torch.Tensor) -> dict:
    prob = detector.detect(images)
    return {"face_prob": float(prob.mean()), "face_prob_ci": list(mean_ci(prob)), "samples": len(prob)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", default="runs/t2i/base", help="text-to-image base directory")
    p.add_argument("--fits", nargs="*", default=[], help="t2i_lfw.py work directories (their weights/ at strength 1)")
    p.add_argument("--forget", default="George_W_Bush")
    p.add_argument("--anchor-prompts", nargs="+", default=["a person", "", "a photo of a person"])
    p.add_argument("--samples", type=int, default=48)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--steps-ddim", type=int, default=25)
    p.add_argument("--out", default=None, help="write the measurements as JSON here")
    return p


def main(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    base = load_base_model(a.base)
    cond, unet = base.conditioning, base.unet.eval()
    if a.forget not in cond.identities:
        raise SystemExit(f"{a.forget!r} is not one of the base's identities")
    detector, seeds = FaceRate(), list(range(a.samples))
    kwargs = dict(conditioning=cond, seeds=seeds, guidance_scale=a.guidance, num_inference_steps=a.steps_ddim)
    labels = torch.full((a.samples,), cond.identities.index(a.forget))
    out: dict = {"anchor_prompts": {}, "forget": a.forget, "forget_on_base": None, "fits": {}}
    for prompt in a.anchor_prompts:  # the prompt's own states stand in for every row's condition
        states = cond.for_unet(unet, cond.encode_prompts([prompt])).expand(a.samples, -1, -1)
        out["anchor_prompts"][prompt] = face_prob(detector, sample(unet, base.scheduler, labels, embeddings=states,
                                                                   **kwargs))
    out["forget_on_base"] = face_prob(detector, sample(unet, base.scheduler, labels, **kwargs))
    for fit in a.fits:
        student = load_base_model(a.base).unet.eval()
        load_method(student, Path(fit) / "weights", strength=1.0)
        hparams = yaml.safe_load(next(Path(fit).rglob("hparams.yaml")).read_text())
        out["fits"][fit] = {**face_prob(detector, sample(student, base.scheduler, labels, **kwargs)),
                            **{k: hparams.get(k) for k in ("forget_target", "eta", "anchor_prompt")}}
    out["command"] = shlex.join(["python", "benchmarks/anchor_faces.py", *(argv if argv is not None else sys.argv[1:])])
    out["commit"] = git_commit()
    print(json.dumps(out, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
