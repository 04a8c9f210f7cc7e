"""Audit every method after the LFW comparison fit: can the forgotten person be brought back?

    python benchmarks/audit_methods.py --base runs/lfw/base --work runs/lfw/compare

For each method, the artifact of ``compare_methods.py`` (``<work>/<forget>/<method>/weights``; fitted
here with the same overrides when missing, refused when it is a fit of another base or configuration) is audited
with ``legato_pl.audit.run_audit``: condition
inversion (base vs unlearned, same budget), relearning (k photos of the person, and other people
only), loss-based membership inference. Each method's audit is cached in ``<work>/<forget>/<method>/audit``
(redone when the settings change); the base model's side of the attacks, the same for every method, once
in ``<work>/<forget>/base_audit``.
Writes benchmarks/results/audit_methods.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from compare_methods import METHODS

from legato_pl.audit import AuditResult, AuditSettings, run_audit
from legato_pl.metrics import load_encoder
from legato_pl.metrics.bootstrap import proportion_ci

from harness import (
    add_unlearning_args,
    cached_fit,
    command_line,
    fit_heldout_fraction,
    git_commit,
    markdown_table,
    with_interval,
    write_report,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_unlearning_args(p, work="runs/lfw/compare", steps=300)
    p.add_argument("--forget", default="George_W_Bush")
    p.add_argument("--methods", nargs="+", default=["legato", "residual", "lora", "full"], choices=list(METHODS))
    p.add_argument("--samples", type=int, default=32, help="forget-person samples per accuracy")
    p.add_argument("--inversion-steps", type=int, default=300)
    p.add_argument("--relearn-k", type=int, nargs="*", default=[1, 4, 16])
    p.add_argument("--relearn-params", nargs="+", default=["method"], choices=["method", "lora"],
                   help="what relearning fine-tunes: the method's own parameters, and/or a fresh LoRA on the UNet")
    p.add_argument("--relearn-lr", type=float, default=1e-3,
                   help="relearning lr for every method (default: the unlearning lr of configs/legato_lfw.yaml, so "
                        "the attacker trains at least as hard as the eraser did)")
    p.add_argument("--relearn-steps", type=int, default=200)
    p.add_argument("--relearn-eval-every", type=int, default=25)
    return p


def main(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    encoder = load_encoder("dlib")
    methods: dict[str, dict] = {}
    for method in a.methods:
        run = Path(a.work) / a.forget / method
        cached = run / "audit" / "audit.json"
        cached_fit(a, a.forget, run, METHODS[method])  # a cached fit of another base or configuration is refused
        settings = AuditSettings(samples=a.samples, guidance_scale=a.guidance, sampling_steps=a.steps_ddim,
                                 inversion_steps=a.inversion_steps, relearn_k=tuple(a.relearn_k),
                                 relearn_params=tuple(a.relearn_params), relearn_lr=a.relearn_lr,
                                 relearn_steps=a.relearn_steps, relearn_eval_every=a.relearn_eval_every,
                                 heldout_fraction=fit_heldout_fraction(run))
        same = json.loads(json.dumps(asdict(settings)))
        if not cached.is_file() or json.loads(cached.read_text())["settings"] != same:  # audited with these settings?
            result = run_audit(a.base, str(run / "weights"), a.forget, a.root, encoder, settings, run / "audit",
                               base_cache=Path(a.work) / a.forget / "base_audit")
            print(result.markdown(), flush=True)
        methods[method] = json.loads(cached.read_text())
        write_results(a, argv, methods)
    return methods


def with_intervals(accuracies: dict, n: int) -> dict:
    """``acc_base`` / ``acc_unlearned`` with their Wilson 95% intervals over ``n`` samples (``<key>_ci``)."""
    keys = [k for k in ("acc_base", "acc_unlearned") if accuracies.get(k) is not None]
    return {**{k: accuracies[k] for k in keys}, **{f"{k}_ci": list(proportion_ci(accuracies[k], n)) for k in keys}}


def write_results(a: argparse.Namespace, argv: list[str] | None, methods: dict[str, dict]) -> dict:
    out = {"command": command_line("audit_methods.py", argv), "commit": git_commit(), "forget": a.forget, "methods": {}}
    rows = []
    for name, r in methods.items():
        ci, mi, rl = r["condition_inversion"], r["membership_inference"], r["relearning"]
        n = r["settings"]["samples"]
        own, inversion = with_intervals(r["plain"], n), {**with_intervals(ci, n), "steps": ci.get("steps")}
        out["methods"][name] = {
            "own_condition": own,
            "condition_inversion": inversion,
            "relearning": {k: {"steps_to_half_base": v["steps_to_target"], "photos": v["photos"], "budget": v["budget"],
                               "curve": v["curve"]} for k, v in rl.items()},
            "membership_inference": {k: mi[k] for k in ("auc_before", "auc_after", "tpr_at_1pct_before",
                                                        "tpr_at_1pct_after", "members", "nonmembers")},
            "samples": n, "seed": r["settings"]["seed"], "seconds": r["seconds"],
        }
        rows.append([name, *[with_interval(d, k, ".2f") if k in d else "" for d in (own, inversion)
                             for k in ("acc_base", "acc_unlearned")],
                     *[str(v["steps_to_target"]) if v["steps_to_target"] is not None else f"> {v['budget']}"
                       for v in rl.values()], mi["auc_before"], mi["auc_after"]])
    relearn_cols = [f"relearn {k}: steps to half base acc" for k in next(iter(methods.values()))["relearning"]]
    any_run = next(iter(methods.values()))
    md = [f"# Audit of every method on LFW, forgetting {a.forget}", "", f"Command: `{out['command']}`", "",
          f"{any_run['settings']['samples']} samples of the person per accuracy (dlib nearest centroid over the 40 "
          f"people, held-out photos; Wilson 95% interval in brackets: overlapping intervals are a tie), seed "
          f"{any_run['settings']['seed']}; membership inference on "
          f"{any_run['membership_inference']['members']} training vs {any_run['membership_inference']['nonmembers']} "
          "held-out photos of the person. Base = the same attack on the base model.", ""]
    md += markdown_table(["method", "own acc base", "own acc unlearned", "inversion acc base", "inversion acc unlearned",
                          *relearn_cols, "MIA AUC before", "MIA AUC after"], rows)
    md += ["", "Verdicts:", ""]
    for name, r in methods.items():
        fields = {k: r[k] for k in asdict(AuditResult("", "", {}))}
        md += [f"- **{name}**: " + "; ".join(AuditResult(**fields).verdicts())]
    return write_report(a.out, "audit_methods", out, md)


if __name__ == "__main__":
    main()
