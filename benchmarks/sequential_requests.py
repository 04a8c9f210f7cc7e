"""Two removal requests in sequence: forget person A, then person B on top of A's adapters.

    python benchmarks/sequential_requests.py --base runs/lfw/base --first runs/lfw/compare/George_W_Bush/legato/weights

The second fit loads A's adapters frozen at strength 1 (``model.previous_adapters``), so base + A is
its teacher, and trains new adapters for B. Samples from the same seeds are then scored three ways:
the base, base + A, base + A + B; A's forgetting and the retain metrics are re-measured after B.
--first reuses A's adapters (e.g. the legato run of compare_methods.py); without it A is fitted here.
Writes benchmarks/results/sequential_requests.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from legato_pl.methods import load_method
from legato_pl.metrics import UnlearningMetrics, load_encoder
from legato_pl.models.base import load_base_model
from legato_pl.sampling import sample

from harness import (
    add_unlearning_args,
    command_line,
    fit_heldout_fraction,
    fit_unlearning,
    git_commit,
    heldout_by_label,
    pick_retain,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_unlearning_args(p, work="runs/lfw/sequential")
    p.add_argument("--first-person", default="George_W_Bush")
    p.add_argument("--second-person", default="Colin_Powell")
    p.add_argument("--first", help="adapters of the first request (fitted here when omitted)")
    return p


def main(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    work = Path(a.work)
    result: dict = {"command": command_line("sequential_requests.py", argv), "commit": git_commit()}
    first = Path(a.first) if a.first else work / "first" / "weights"
    if not a.first:
        result["fit_first"] = fit_unlearning(a, a.first_person, work / "first")
    result["fit_second"] = fit_unlearning(a, a.second_person, work / "second",
                                          ["--model.init_args.previous_adapters", json.dumps([str(first)])])

    base = load_base_model(a.base)
    names = base.identities
    A, B = names.index(a.first_person), names.index(a.second_person)
    retain = [names.index(n) for n in pick_retain([n for n in names if n != a.second_person], a.first_person,
                                                  a.retain_identities)]
    labels = torch.cat([torch.full((a.forget_samples,), A), torch.full((a.forget_samples,), B),
                        torch.tensor(retain).repeat_interleave(a.per_identity)])
    kw = dict(null_class=base.null_class, guidance_scale=a.guidance, num_inference_steps=a.steps_ddim, seed=0)
    unet = base.unet.eval()
    samples = {"base": sample(unet, base.scheduler, labels, **kw)}
    stack = load_method(unet, work / "second" / "weights")  # B's artifact holds A: the deployed base + A + B
    with stack.at_strength(0.0):
        samples["base+A"] = sample(unet, base.scheduler, labels, **kw)
    samples["base+A+B"] = sample(unet, base.scheduler, labels, **kw)

    real = heldout_by_label(a.root, names, unet.config.sample_size, fit_heldout_fraction(work / "second"))
    encoder = load_encoder("dlib")
    rows = {}
    for stage, after in samples.items():
        row = {}
        for person, key in ((A, "A"), (B, "B")):
            keep = labels != (B if person == A else A)  # this person's rows + the retain rows
            m = UnlearningMetrics(encoder, real, forget_labels=[person])
            m.update(samples["base"][keep], after[keep], labels[keep])
            values = m.compute()
            row[f"acc_{key}"], row[f"ID_{key}"] = values["acc_forget"], values["ID_forget"]
            row.update({k: values[k] for k in ("acc_retain", "ID_retain", "FD_pre")})
        rows[stage] = row
    result.update({"first_person": a.first_person, "second_person": a.second_person, "first_adapters": str(first),
                   "retain_evaluated": [names[k] for k in retain], "steps": a.steps, "stages": rows})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sequential_requests.json").write_text(json.dumps(result, indent=2) + "\n")
    keys = ["acc_A", "ID_A", "acc_B", "ID_B", "acc_retain", "ID_retain", "FD_pre"]
    md = [f"# Sequential requests: A = {a.first_person}, then B = {a.second_person}", "",
          f"Command: `{result['command']}`", "", "| model | " + " | ".join(keys) + " |", "| --- " * (len(keys) + 1) + "|"]
    md += [f"| {stage} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |" for stage, r in rows.items()]
    md += ["", "ID_* and FD_pre compare with the base samples of the same seeds; acc_* is nearest-centroid "
           f"identification against held-out real photos. {a.steps} steps per request."]
    (out / "sequential_requests.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
