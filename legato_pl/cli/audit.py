"""``python -m legato_pl audit``: every attack that tries to bring the forgotten person back, base vs unlearned.

    python -m legato_pl audit --base_model runs/lfw/base --artifact runs/lfw/adapters \\
        --forget George_W_Bush --root ../shared/data/faces --out runs/lfw/audit

Writes audit.json, audit.md and audit_grid.png into --out, and the audit's verdicts into the artifact's model card.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict

from legato_pl.audit.report import AuditResult, AuditSettings, run_audit
from legato_pl.cli.common import Parser, add_artifact_argument, add_device_argument, check_device, run_parsed
from legato_pl.methods.artifact import read_method_file
from legato_pl.metrics.encoders import ENCODER_NAMES


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m legato_pl audit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base_model", required=True)
    add_artifact_argument(p, required=True, help="the artifact directory of any method")
    p.add_argument("--forget", required=True, help="the forgotten person")
    p.add_argument("--root", help="folder-per-person photos (omit for the embedded synthetic identities)")
    p.add_argument("--encoder", default="dlib", choices=ENCODER_NAMES, help="identity judge (dlib: offline)")
    p.add_argument("--out", default="audit", help="directory for audit.json, audit.md and audit_grid.png")
    add_device_argument(p)
    p.add_argument("--base_cache", help="directory keeping the base model's side of the attacks, reused by "
                                        "later audits of other artifacts on the same base, person and settings")
    for name, value in asdict(AuditSettings()).items():
        if isinstance(value, bool):
            p.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, tuple):
            p.add_argument(f"--{name}", nargs="*", default=list(value), type=type(value[0]) if value else str)
        else:
            p.add_argument(f"--{name}", type=type(value), default=value)
    return p


def _run(a: argparse.Namespace) -> AuditResult:
    from legato_pl.metrics import load_encoder

    device = check_device(a.device)
    read_method_file(a.artifact)  # a wrong path stops here, before the judge loads
    fields = asdict(AuditSettings())
    settings = AuditSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(a).items() if k in fields})
    result = run_audit(a.base_model, a.artifact, a.forget, a.root, load_encoder(a.encoder), settings, a.out,
                       base_cache=a.base_cache, device=device)
    print(result.markdown())
    print(f"wrote {a.out}/audit.json, audit.md, audit_grid.png ({result.seconds:.0f} s)")
    return result


def main(argv: Sequence[str] | None = None) -> AuditResult:
    return run_parsed(build_parser(), argv, _run)
