"""The unlearning field's gold standard: each method against a model retrained without the person.

    python benchmarks/gold_standard.py --base runs/lfw/base --reference runs/lfw/reference

The **reference** is the LFW base retrained with the same config, steps and seed but without the test people's
photos (``configs/pretrain_lfw.yaml`` with ``data.exclude``; their classes exist and never see data). It is
pretrained here when --reference does not hold it (~40 min on 2 idle cores). The test people are the committed
draw of ``benchmarks/people_split.json``; every default was tuned on the dev people, never on them.

For each test person, the base, the reference and each method (one fit per person, ``compare_methods.py``'s
configurations) are measured with the same seeds and the same dlib judge (held-out photos):

- ``acc_own``: share of the person's samples identified as them; ``face_rate``: share in which MTCNN finds a
  face (probability >= 0.9); ``moved``: share whose identity moved from the base's same-seed sample as far as
  two different people differ (the base: 0 by definition);
- ``inversion_acc``: the same accuracy after a condition inversion on the person's training photos (the
  audit's attack and budget);
- ``relearn_steps``: LoRA (rank 4) fine-tuning steps on k = 1, 4, 16 of the person's photos until acc_own
  reaches half the base's (null: not within the budget);
- ``mia_auc``: loss-based membership inference, the person's training vs held-out photos;
- ``acc_retain`` and ``FD_pre``: the people the reference saw (every test person left out; --per-identity
  samples each) against the base.

Each with a bootstrap 95% interval, and for each method its ``gap`` to the reference (method - reference, with
the interval of the difference; an interval holding 0 is a tie). Fits and measurements are cached under --work.
Writes benchmarks/results/gold_standard.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import torch
from compare_methods import METHODS, base_samples, scores, seeds_for
from torch import nn

from legato_pl.audit.inversion import invert_condition
from legato_pl.audit.judge import IdentityJudge
from legato_pl.audit.membership import auc, denoising_errors
from legato_pl.audit.relearning import relearn
from legato_pl.data import IdentityImages
from legato_pl.methods import load_method, read_method_file
from legato_pl.metrics import UnlearningMetrics, load_encoder
from legato_pl.metrics.bootstrap import bootstrap_ci, mean_ci
from legato_pl.metrics.faces import FaceRate
from legato_pl.models.base import load_base_model
from legato_pl.sampling import sample

from harness import (
    SPLIT_FILE,
    add_unlearning_args,
    cached_fit,
    command_line,
    git_commit,
    markdown_table,
    misses_estimate,
    run_cli,
    save_atomic,
    with_interval,
    write_report,
)

# The person's samples start here: away from the seeds StopWhenForgotten chooses a fit's state on (10_000 + i) and
# from compare_methods' seeds (1000 c + j), so a fit is never measured on the samples it was selected on.
MEASURE_SEED = 50_000
METRICS = ["acc_own", "face_rate", "moved", "inversion_acc", "mia_auc", "acc_retain", "FD_pre"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_unlearning_args(p, work="runs/lfw/gold_standard", steps=300)
    p.add_argument("--reference", default="runs/lfw/reference",
                   help="the base retrained without the test people (pretrained here when missing)")
    p.add_argument("--pretrain-config", default="configs/pretrain_lfw.yaml")
    p.add_argument("--fit-only", action="store_true",
                   help="only fit (and cache under --work) every method for every person, measuring nothing: run "
                        "beside a measuring run to use both cores")
    p.add_argument("--pretrain-args", default="", help="extra overrides for pretraining a missing reference (quoted)")
    p.add_argument("--people", nargs="*", help="test people (default: benchmarks/people_split.json's)")
    p.add_argument("--methods", nargs="*", default=["legato", "lora", "full_lr3e-5"], choices=list(METHODS),
                   help="compare_methods.py's configurations (lora and full_lr3e-5: the rates chosen on the dev people)")
    p.add_argument("--samples", type=int, default=64, help="samples of the person per accuracy / face rate")
    p.add_argument("--inversion-steps", type=int, default=300)
    p.add_argument("--relearn-k", type=int, nargs="*", default=[1, 4, 16])
    p.add_argument("--relearn-steps", type=int, default=200)
    p.add_argument("--relearn-eval-every", type=int, default=25)
    p.add_argument("--resamples", type=int, default=1000)
    return p


def reference_model(a: argparse.Namespace, people: list[str]) -> Path:
    """The base retrained without ``people``'s photos (built when --reference does not hold one without them)."""
    ref = Path(a.reference)
    recorded = ref / "excluded.json"
    if ref.is_dir() and recorded.is_file():
        if not set(people) <= set(json.loads(recorded.read_text())):
            raise SystemExit(f"{ref} was retrained without {json.loads(recorded.read_text())}, which does not hold "
                             f"every one of {people}: pass another --reference")
        return ref
    run_cli(a.pretrain_config, ["--model.init_args.output_dir", str(ref), "--data.init_args.root", a.root,
                                "--data.init_args.exclude", json.dumps(people),
                                "--trainer.logger.init_args.save_dir", str(ref.parent),
                                "--trainer.logger.init_args.name", f"{ref.name}_pretrain",
                                *shlex.split(a.pretrain_args)])
    recorded.write_text(json.dumps(people) + "\n")
    return ref


def interval(values: torch.Tensor, resamples: int) -> tuple[float, list[float]]:
    values = values.float()
    return float(values.mean()), list(mean_ci(values, num_resamples=resamples))


def gap(a: torch.Tensor, b: torch.Tensor, resamples: int, seed: int = 0) -> list[float]:
    """``[mean(a) - mean(b), lo, hi]``: the difference of two independent samples' means, bootstrap 95%."""
    gen = torch.Generator().manual_seed(seed)
    a, b = a.double(), b.double()
    diffs = torch.stack([a[torch.randint(len(a), (len(a),), generator=gen)].mean()
                         - b[torch.randint(len(b), (len(b),), generator=gen)].mean() for _ in range(resamples)])
    lo, hi = torch.quantile(diffs, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return [float(a.mean() - b.mean()), lo, hi]


class Bench:
    """What every measured model shares: the person's photos, the judge, the base samples, the settings."""

    def __init__(self, a: argparse.Namespace, base_dir: Path, excluded: list[str]):
        self.a, self.base_dir = a, base_dir
        self.base = load_base_model(base_dir)
        self.names, self.scheduler = self.base.identities, self.base.scheduler
        self.kept = [c for c, n in enumerate(self.names) if n not in excluded]  # the people the reference saw
        size = self.base.unet.config.sample_size
        self.data = IdentityImages(a.root, size, 0.2, identities=self.names)
        self.encoder = load_encoder("dlib")
        self.judge = IdentityJudge(self.encoder, {i: self.data.heldout[n] for i, n in enumerate(self.names)}, size)
        self.real = {i: self.data.heldout[n] for i, n in enumerate(self.names)}
        self.faces = FaceRate()
        self._metrics: dict[int, UnlearningMetrics] = {}
        self._base_accuracy: dict[str, float] = {}
        self._base_own: dict[str, torch.Tensor] = {}
        self.sampling = {"guidance_scale": a.guidance, "num_inference_steps": a.steps_ddim}

    def metrics(self, label: int) -> UnlearningMetrics:
        if label not in self._metrics:
            self._metrics[label] = UnlearningMetrics(self.encoder, self.real, forget_labels=[label])
        return self._metrics[label]

    def fresh(self, model_dir: Path, artifact: Path | None) -> nn.Module:
        unet = load_base_model(model_dir).unet.eval()
        if artifact is not None:
            load_method(unet, artifact)
        return unet

    def measure(self, person: str, model_dir: Path, artifact: Path | None, work: Path) -> dict:
        """Every metric of one model (cached in ``work/measure.pt``); per-row values kept for the gaps."""
        cache = work / "measure.pt"
        work.mkdir(parents=True, exist_ok=True)
        out = torch.load(cache) if cache.is_file() else {}
        if out.get("measure_seed") != MEASURE_SEED:  # not measured yet, or from an older seed range
            out = {**self.measure_person(person, model_dir, artifact), "measure_seed": MEASURE_SEED,
                   "relearn_seeded": True, "relearn_keeps_lora": True}
            save_atomic(out, cache)
        # redone: relearned from a LoRA the process's RNG state initialised, or (a LoRA artifact) relearned with the
        # artifact's own LoRA switched off by the attacker's
        lora_artifact = artifact is not None and read_method_file(artifact).get("method") == "lora"
        if not out.get("relearn_seeded") or (lora_artifact and not out.get("relearn_keeps_lora")):
            out.update(self.relearn_steps(person, model_dir, artifact), relearn_seeded=True, relearn_keeps_lora=True)
            save_atomic(out, cache)
        # measured before on other kept people, or with an FD interval made before its fix
        if out.get("kept_labels") != self.kept or misses_estimate(out, "FD_pre_ci"):
            out.update(self.measure_kept(person, model_dir, artifact))
            save_atomic(out, cache)
        return out

    def measure_person(self, person: str, model_dir: Path, artifact: Path | None) -> dict:
        """What the model does with the person: own accuracy, faces, movement, inversion, membership, relearning."""
        a, f = self.a, self.names.index(person)
        cond = self.base.conditioning
        labels = torch.full((a.samples,), f)
        seeds = [MEASURE_SEED + i for i in range(a.samples)]
        unet = self.fresh(model_dir, artifact)
        own = sample(unet, self.scheduler, labels, seeds=seeds, conditioning=cond, **self.sampling)
        base_own = self.base_own(person, labels, seeds)
        rows = {"acc_own": (self.judge.predict(own) == f).float(),
                "face_rate": (self.faces.detect(own) >= self.faces.min_prob).float()}
        cos = (self.judge.embed(own) * self.judge.embed(base_own)).sum(1)
        rows["moved"] = (cos <= self.metrics(f).different_people_cosine).float()
        members, nonmembers = self.data.train[person], self.data.heldout[person]
        inv = invert_condition(unet, self.scheduler, members, cond.soft_init(unet), steps=a.inversion_steps,
                               seed=0, conditioning=cond)
        inverted = sample(unet, self.scheduler, labels, seeds=seeds, conditioning=cond,
                          embeddings=inv.condition.expand(a.samples, *inv.condition.shape[1:]), **self.sampling)
        rows["inversion_acc"] = (self.judge.predict(inverted) == f).float()
        # the loss attack's score: minus the mean denoising error (a member is denoised better)
        errors = [-denoising_errors(unet, self.scheduler, x, f, conditioning=cond).mean(1) for x in (members, nonmembers)]
        return {"rows": rows, "mia_scores": errors, **self.relearn_steps(person, model_dir, artifact)}

    def measure_kept(self, person: str, model_dir: Path, artifact: Path | None) -> dict:
        """The people the reference saw, against the base (same seeds as compare_methods.py)."""
        a = self.a
        unet = self.fresh(model_dir, artifact)
        others = torch.cat([torch.full((a.per_identity,), c) for c in self.kept])
        before = base_samples(self.base.unet.eval(), self.scheduler, others, Path(a.work) / "base_samples.pt",
                              null_class=self.base.null_class, **self.sampling)
        after = sample(unet, self.scheduler, others, seeds=seeds_for(others), null_class=self.base.null_class,
                       **self.sampling)
        kept = scores(self.metrics(self.names.index(person)), before, after, others, a.resamples)
        return {"kept_labels": self.kept, "acc_retain": kept["acc_retain"], "acc_retain_ci": kept["acc_retain_ci"],
                "FD_pre": kept.get("FD_pre"), "FD_pre_ci": kept.get("FD_pre_ci")}

    def relearn_steps(self, person: str, model_dir: Path, artifact: Path | None) -> dict[str, dict]:
        """LoRA steps on k of the person's photos until acc_own is back at half the base's (every model alike):
        ``relearn_steps`` (k -> first step at the target, None: not within the budget) and ``relearn_curves``
        (k -> [(step, accuracy)], with the target)."""
        a, f = self.a, self.names.index(person)
        target = 0.5 * self.base_accuracy(person)
        photos = self.data.train[person]
        steps, curves = {}, {"target": target}
        for k in a.relearn_k:
            unet = self.fresh(model_dir, artifact)
            r = relearn(unet, self.scheduler, nn.Module(), photos[:k], torch.full((min(k, len(photos)),), f),
                        self.judge, f, target=target, conditioning=self.base.conditioning, params="lora",
                        max_steps=a.relearn_steps, eval_every=a.relearn_eval_every, eval_samples=16,
                        sampling=self.sampling)
            steps[str(k)], curves[str(k)] = r.steps_to_target, r.curve
        return {"relearn_steps": steps, "relearn_curves": curves}

    def base_own(self, person: str, labels: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """The base's samples of the person from the measurement seeds, drawn once per person."""
        if person not in self._base_own:
            self._base_own[person] = sample(self.base.unet.eval(), self.scheduler, labels, seeds=seeds,
                                            conditioning=self.base.conditioning, **self.sampling)
        return self._base_own[person]

    def base_accuracy(self, person: str) -> float:
        """The base's accuracy on 16 samples of the person, the relearning's reference (seed 0, as relearn evaluates)."""
        if person not in self._base_accuracy:
            labels = torch.full((16,), self.names.index(person))
            images = sample(self.base.unet.eval(), self.scheduler, labels, seed=0, conditioning=self.base.conditioning,
                            **self.sampling)
            self._base_accuracy[person] = self.judge.accuracy(images, self.names.index(person))
        return self._base_accuracy[person]


def summary(m: dict, resamples: int) -> dict:
    """Means and intervals of a measurement (the per-row values stay in the cache)."""
    out = {}
    for key, values in m["rows"].items():
        out[key], out[f"{key}_ci"] = interval(values, resamples)
    members, nonmembers = m["mia_scores"]
    out["mia_auc"] = auc(members, nonmembers)
    idx = torch.arange(len(members) + len(nonmembers))
    both = torch.cat([members, nonmembers])

    def resampled_auc(i: torch.Tensor) -> float:
        rows = idx[i]
        mem, non = both[rows[rows < len(members)]], both[rows[rows >= len(members)]]
        return auc(mem, non) if len(mem) and len(non) else float("nan")

    out["mia_auc_ci"] = list(bootstrap_ci(resampled_auc, len(both), num_resamples=resamples))
    out.update({k: m[k] for k in ("acc_retain", "acc_retain_ci", "FD_pre", "FD_pre_ci", "relearn_steps")})
    if "relearn_curves" in m:  # (step, accuracy) checks behind relearn_steps; caches before them have none
        out["relearn_curves"] = m["relearn_curves"]
    return out


def gaps(m: dict, ref: dict, resamples: int) -> dict:
    out = {key: gap(m["rows"][key], ref["rows"][key], resamples) for key in m["rows"]}
    out["mia_auc"] = [auc(*m["mia_scores"]) - auc(*ref["mia_scores"]), None, None]  # point value (AUC intervals above)
    return out


def main(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    split = json.loads(SPLIT_FILE.read_text())
    people = a.people or split["test"]
    if a.fit_only:
        for person in people:
            for method in a.methods:
                cached_fit(a, person, Path(a.work) / person / method, METHODS[method])
        return {}
    reference = reference_model(a, people)
    bench = Bench(a, Path(a.base), json.loads((reference / "excluded.json").read_text()))
    work = Path(a.work)
    out = {"command": command_line("gold_standard.py", argv), "commit": git_commit(),
           "reference": {"config": a.pretrain_config, "path": str(reference),
                         "excluded": json.loads((reference / "excluded.json").read_text())},
           "dev": split["dev"], "test": people, "per_identity": {}}
    for person in people:
        entry = out["per_identity"].setdefault(person, {"methods": {}})
        measured = {"base": bench.measure(person, Path(a.base), None, work / person / "base"),
                    "reference": bench.measure(person, reference, None, work / person / "reference")}
        entry["base"], entry["reference"] = (summary(measured[k], a.resamples) for k in ("base", "reference"))
        for method in a.methods:
            run = work / person / method
            fit = cached_fit(a, person, run, METHODS[method])
            m = bench.measure(person, Path(a.base), run / "weights", run / "measured")
            entry["methods"][method] = {**summary(m, a.resamples), "gap": gaps(m, measured["reference"], a.resamples),
                                        "steps_run": fit.get("steps_run"), "fit_seconds": fit.get("wall_time_s")}
            write_results(a, out)
        write_results(a, out)
    return write_results(a, out)


def write_results(a: argparse.Namespace, out: dict) -> dict:
    md = ["# Against the gold standard: a model retrained without the person", "",
          f"Command: `{out['command']}` (commit {out['commit']})", "",
          f"Reference: `{out['reference']['config']}` without {', '.join(out['reference']['excluded'])}. "
          f"Test people (never tuned on): {', '.join(out['test'])}. Brackets: bootstrap 95% intervals; a gap "
          "(method - reference) whose interval holds 0 is a tie.", ""]
    for person, entry in out["per_identity"].items():
        md += [f"## {person}", ""]
        rows = [[name, *[with_interval(r, k) for k in METRICS], json.dumps(r["relearn_steps"])]
                for name, r in [("base", entry["base"]), ("reference", entry["reference"]), *entry["methods"].items()]]
        md += markdown_table(["model", *METRICS, "relearn_steps"], rows)
        if entry["methods"]:
            md += ["", "Gap to the reference:", ""]
            md += markdown_table(["method", *entry["methods"][next(iter(entry["methods"]))]["gap"]],
                                 [[m, *[f"{v[0]:+.3f}" + (f" [{v[1]:+.3f}, {v[2]:+.3f}]" if v[1] is not None else "")
                                        for v in r["gap"].values()]] for m, r in entry["methods"].items()])
        md.append("")
    return write_report(a.out, "gold_standard", out, md)


if __name__ == "__main__":
    main()
