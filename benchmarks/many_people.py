"""Many removal requests on the LFW base: k people in one fit, and k one-person requests stacked or warm-started.

    python benchmarks/many_people.py --base runs/lfw/base                # legato, lora, full_lr3e-5; k = 1 5 10 20
    python benchmarks/many_people.py --methods legato --ks 1 5 10 20 --stacked --t2i-ks  # legato only, no stack
    python benchmarks/many_people.py --update --ks --stacked --t2i-ks --warm 1 5 10  # add warm-started requests
    python benchmarks/many_people.py --update --ks --stacked --t2i-ks --warm 1 5 10 --stop-per-person 16
    python benchmarks/many_people.py --update --methods --ks --t2i-ks --stacked 5 10 --request-steps 50
    python benchmarks/many_people.py --update --methods --ks --t2i-ks --stacked 5 10 --request-steps 50 \
        --retain-teacher base

People: the base's people minus the dev people the configs were tuned on (George_W_Bush, Tony_Blair,
Serena_Williams), drawn in a seeded order (``--seed``); the k erased are the first k of that order, so k = 1 is
one of the k = 5 people and so on. The others (the dev people included) are the kept people.

**One fit** (``one_fit``): ``configs/legato_lfw.yaml`` with ``forget: [the k people]`` for each method: legato
as the config is (its early stop judges every erased person; ``--steps`` is the cap), lora and full at the
config's objective for the full ``--steps`` with the learning rates chosen on the dev people (``lora``: 1e-3,
``full_lr3e-5``; benchmarks/results/lr_sweep/), not tuned per k.
**Stacked** (``stacked``): one legato request per person, each trained on top of the previous artifact
(``model.previous_adapters``); the stack after k requests is scored as deployed (``load_method`` on its last
artifact), with the cost of one sampling step against the base's. ``--stack-cost N`` (``stack_cost``) times stacks
of 1..N requests trained one step each: what a deployed stack costs per sampling step, not how well it forgets.
**Warm-started** (``warm``): one legato request per person, each continuing from the previous artifact with every
person so far in ``forget`` (``model.warm_start``): the deployed model stays one request, scored and timed like the
stack. The config's stop checks 32 samples in all, about 6 per person at k = 5; ``--stop-per-person 16`` makes it
check as many of each erased person as the score does (fits cached apart, rows labelled).
``--request-steps N`` caps every stacked and warm request at N steps (a chain of ten 300-step requests takes ~9 h of
CPU); its runs are cached apart and its rows keyed ``k_stepsN`` beside the uncapped ones. ``--retain-teacher base``
holds each stacked request's others to the base instead of the stack so far (``model.retain_teacher``; the people
earlier requests forgot stay held to the stack): cached apart, rows keyed ``k[_stepsN]_retainbase``.
**Text-to-image** (``t2i``): legato (``configs/legato_t2i_lfw.yaml``) erases the first k names from the text-to-image
LFW base (``--t2i-base``, pretrained with ``configs/pretrain_t2i_lfw.yaml`` when missing) in one fit; samples from the
name prompts of the config's templates.

Scores (dlib judge against held-out photos; --erased-samples per erased person, --per-identity per kept one, same
seeds as the base): erased people's accuracy (still identified), the kept people's accuracy, FD_pre of the kept
people's identity embeddings (base vs unlearned), the face rate (MTCNN) of the erased people's samples; each with
a bootstrap 95% interval. Cost: trainable parameters, seconds per step, peak RSS and the fit's wall time.
Fits and scores are cached under --work. Writes benchmarks/results/many_people.{json,md}; with ``--update`` the rows
this run does not make stay as they were, each with the command and commit that made it.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import time
from pathlib import Path

import torch
import yaml
from compare_methods import METHODS, base_samples, scores, seeds_for
from safetensors.torch import load_file

from legato_pl.methods import load_method
from legato_pl.metrics import UnlearningMetrics, load_encoder
from legato_pl.metrics.bootstrap import mean_ci
from legato_pl.metrics.faces import FaceRate
from legato_pl.models.base import load_base_model
from legato_pl.sampling import sample

from harness import (
    DEV_PEOPLE,
    add_unlearning_args,
    base_fingerprint,
    cached_fit,
    command_line,
    fit_heldout_fraction,
    git_commit,
    heldout_by_label,
    markdown_table,
    run_cli,
    with_interval,
    with_stop,
    without_invalid_intervals,
    write_report,
)

COLUMNS = ["acc_erased", "acc_kept", "FD_pre", "face_rate_erased"]
SECTIONS = ["one_fit", "stacked", "warm", "stack_cost", "t2i"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_unlearning_args(p, work="runs/lfw/many_people", steps=300)
    p.set_defaults(per_identity=8)
    p.add_argument("--erased-samples", type=int, default=16, help="samples per erased person")
    p.add_argument("--methods", nargs="*", default=["legato", "lora", "full_lr3e-5"], choices=list(METHODS),
                   help="compare_methods.py's configurations (lora and full_lr3e-5: the rates chosen on the dev people)")
    p.add_argument("--ks", type=int, nargs="*", default=[1, 5, 10, 20], help="people erased in one fit")
    p.add_argument("--stacked", type=int, nargs="*", default=[1, 5, 10],
                   help="stack sizes scored (one legato request per person, up to the largest)")
    p.add_argument("--warm", type=int, nargs="*", default=[],
                   help="request counts scored when each request warm-starts from the last (one artifact, all so far; "
                        "none by default, so the commands of earlier rows make what they made)")
    p.add_argument("--stop-per-person", type=int, default=0, metavar="N",
                   help="legato fits keeping the config's stop (one fit's legato, stacked and warm requests) check at "
                        "least N samples of each erased person (StopWhenForgotten.min_samples_per_person; 0: the "
                        "config's stop as it is); their runs are cached apart")
    p.add_argument("--request-steps", type=int, default=0, metavar="N",
                   help="cap every stacked and warm-started request at N steps (0: --steps); their runs are cached "
                        "apart and their rows keyed k_stepsN, beside the rows of uncapped requests")
    p.add_argument("--retain-teacher", choices=["stack", "base"], default="stack",
                   help="what each stacked request holds the others to (model.retain_teacher): the stack so far, or "
                        "the base for everyone no earlier request forgot; base-held runs are cached apart")
    p.add_argument("--stack-cost", type=int, default=0, metavar="N",
                   help="sampling cost of stacks of 1..N requests trained one step each (cost only: the adapters' "
                        "weights do not change the compute)")
    p.add_argument("--t2i-ks", type=int, nargs="*", default=[1, 5], help="names erased in one fit from the t2i base")
    p.add_argument("--t2i-base", default="runs/t2i/base", help="text-to-image base (pretrained here when missing)")
    p.add_argument("--t2i-pretrain-config", default="configs/pretrain_t2i_lfw.yaml")
    p.add_argument("--t2i-pretrain-args", default="", help="extra CLI overrides for pretraining the t2i base (quoted)")
    p.add_argument("--t2i-unlearn-config", default="configs/legato_t2i_lfw.yaml")
    p.add_argument("--t2i-unlearn-args", default="", help="extra CLI overrides for the t2i fits (quoted)")
    p.add_argument("--seed", type=int, default=0, help="seeds the order the people are drawn in")
    p.add_argument("--exclude", nargs="*", default=DEV_PEOPLE, help="people never erased (default: the dev people)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per interval")
    p.add_argument("--update", action="store_true",
                   help="keep the rows of the existing results file that this run does not make (each row keeps the "
                        "command and commit that made it)")
    return p


def draw_people(names: list[str], n: int, seed: int, exclude: list[str]) -> list[str]:
    """``n`` people in a seeded order, ``exclude`` (the dev people the configs were tuned on) left out."""
    candidates = sorted(set(names) - set(exclude))
    if n > len(candidates):
        raise SystemExit(f"--ks / --stacked ask for {n} people; the base has {len(candidates)} besides --exclude")
    return random.Random(seed).sample(candidates, n)


class Judge:
    """Base samples, the dlib judge and MTCNN, shared by every scored model (of a class-conditional base or, with
    ``prompt_templates``, a text-to-image one)."""

    def __init__(self, a: argparse.Namespace, base_dir: Path, work: Path, prompt_templates: list[str] | None = None):
        self.a, self.base_dir = a, base_dir
        self.base = load_base_model(base_dir, prompt_templates=prompt_templates)
        self.names = self.base.identities
        self.kwargs = dict(null_class=self.base.null_class, conditioning=self.base.text, guidance_scale=a.guidance,
                           num_inference_steps=a.steps_ddim)
        self.cache = work / "base_samples.pt"
        self.encoder = load_encoder("dlib")
        self.faces = FaceRate()
        self.real: dict[float, dict] = {}

    def score(self, run: Path, artifact: Path, erased: list[str]) -> dict:
        """Scores of the model ``artifact`` deploys (a stack loads whole) with ``erased`` forgotten."""
        a, ids = self.a, [self.names.index(n) for n in erased]
        labels = torch.cat([torch.full((a.erased_samples if c in ids else a.per_identity,), c)
                            for c in range(len(self.names))])
        if self.base.text is None:
            before = base_samples(self.base.unet.eval(), self.base.scheduler, labels, self.cache, **self.kwargs)
        else:  # a prompt's template is drawn per batch, not per seed: the base draws in the same batches as `after`
            before = sample(self.base.unet.eval(), self.base.scheduler, labels, seeds=seeds_for(labels), **self.kwargs)
        unet = load_base_model(self.base_dir).unet.eval()
        load_method(unet, artifact)
        t0 = time.perf_counter()
        after = sample(unet, self.base.scheduler, labels, seeds=seeds_for(labels), **self.kwargs)
        sampling_s = time.perf_counter() - t0
        fraction = fit_heldout_fraction(run)
        if fraction not in self.real:
            size = unet.config.sample_size * (self.base.text.latent_factor if self.base.text is not None else 1)
            self.real[fraction] = heldout_by_label(a.root, self.names, size, fraction)
        metrics = UnlearningMetrics(self.encoder, self.real[fraction], forget_labels=ids)
        s = scores(metrics, before, after, labels, a.resamples)
        rows = torch.isin(labels, torch.tensor(ids))
        faces = (self.faces.detect(after[rows]) >= self.faces.min_prob).float()
        faces_before = (self.faces.detect(before[rows]) >= self.faces.min_prob).float()
        return {"people": erased, "acc_erased": s["acc_forget"], "acc_erased_ci": s["acc_forget_ci"],
                "acc_erased_before": s["acc_forget_before"], "acc_kept": s["acc_retain"],
                "acc_kept_ci": s["acc_retain_ci"], "acc_kept_before": s["acc_retain_before"],
                "FD_pre": s.get("FD_pre"), "FD_pre_ci": s.get("FD_pre_ci"),
                "face_rate_erased": float(faces.mean()), "face_rate_erased_ci": list(mean_ci(faces)),
                "face_rate_erased_before": float(faces_before.mean()), "moved_erased": s["moved_forget"],
                "samples": {"erased": int(rows.sum()), "kept": int((~rows).sum())},
                "sampling_seconds": sampling_s}

    def sampling_step_ratio(self, artifact: Path, repeats: int = 7) -> float:
        """Seconds of one guided denoising step of 8 samples through the base + ``artifact`` over the base's: the
        median of paired ratios, the two models timed alternately so the shared machine's load drifts out."""
        base = self.base.unet.eval()
        deployed = load_base_model(self.base_dir).unet.eval()
        load_method(deployed, artifact)
        labels = torch.zeros(8, dtype=torch.long)

        def step_seconds(unet: torch.nn.Module) -> float:
            t0 = time.perf_counter()
            sample(unet, self.base.scheduler, labels, seed=0, **{**self.kwargs, "num_inference_steps": 1})
            return time.perf_counter() - t0

        step_seconds(base), step_seconds(deployed)  # warm-up
        ratios = sorted(step_seconds(deployed) / step_seconds(base) for _ in range(repeats))
        return ratios[repeats // 2]


def trainable(weights: Path) -> int:
    """Parameters this request trained (a stack's earlier requests, under ``stack/``, not counted)."""
    files = [w for w in weights.rglob("*.safetensors") if "stack" not in w.relative_to(weights).parts]
    return sum(t.numel() for w in files for t in load_file(w).values())


def cost(fit: dict, run: Path, stop_per_person: int = 0) -> dict:
    return {"trainable_params": trainable(run / "weights"), "seconds_per_step": fit.get("seconds_per_step"),
            "peak_rss_mb": fit.get("peak_rss_mb"), "seconds_total": fit.get("wall_time_s"),
            "steps_run": fit.get("steps_run"), **({"stop_per_person": stop_per_person} if stop_per_person else {})}


def stop_overrides(a: argparse.Namespace, extra: list[str] = ()) -> tuple[list[str], int]:
    """``extra`` after the config's stop checking at least ``--stop-per-person`` samples of each erased person, and
    that number; ``extra`` as it is and 0 when the flag is 0 or ``extra`` sets its own callbacks (the baselines' "no
    stop", a variant's stop)."""
    if not a.stop_per_person or "--trainer.callbacks" in extra:
        return list(extra), 0
    return [*with_stop(a.unlearn_config, min_samples_per_person=a.stop_per_person), *extra], a.stop_per_person


def stop_tag(stop_per_person: int) -> str:
    """Suffix of the cache directories of fits made with ``--stop-per-person`` (their configuration differs)."""
    return f"_stop{stop_per_person}" if stop_per_person else ""


def capped_requests(a: argparse.Namespace) -> tuple[argparse.Namespace, str]:
    """The fit arguments of stacked and warm requests (``--request-steps`` for ``--steps`` when set) and the suffix
    of their cache directories and row keys ("" uncapped)."""
    if not a.request_steps:
        return a, ""
    return argparse.Namespace(**{**vars(a), "steps": a.request_steps}), f"_steps{a.request_steps}"


def stacked_variant(a: argparse.Namespace) -> tuple[list[str], str]:
    """The stacked requests' overrides for ``--retain-teacher`` and the suffix of their cache directory and row keys
    ("" for the default, the stack)."""
    if a.retain_teacher == "stack":
        return [], ""
    return ["--model.init_args.retain_teacher", a.retain_teacher], f"_retain{a.retain_teacher}"


def scored(judge: Judge, run: Path, artifact: Path, erased: list[str], extra: dict) -> dict:
    """The cached score in ``run/score.json`` or a new one (made with the fit's base fingerprint)."""
    file = run / "score.json"
    if file.is_file():
        return without_invalid_intervals(json.loads(file.read_text()))
    result = {**extra, **judge.score(run, artifact, erased), "commit": git_commit(),
              "base_fingerprint": base_fingerprint(judge.a.base)}
    file.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    work, base_dir = Path(a.work), Path(a.base)
    command = command_line("many_people.py", argv)
    out: dict = {"command": command, "commit": git_commit(), "people_order": [], **{s: {} for s in SECTIONS}}
    made: list[tuple[list[str], str, dict]] = []

    def record(section: list[str], k: int | str, row: dict) -> None:
        made.append((section, str(k), {**row, "command": command}))
        write_results(a, merged())

    def merged() -> dict:
        """This run's rows over the results file's others (re-read each time: two --update runs may share it)."""
        result = kept_rows(a, {**out, **{s: {} for s in SECTIONS}}) if a.update else out
        mine, theirs = out["people_order"], result["people_order"]  # a shorter draw is a prefix of a longer one
        result["people_order"] = theirs if mine == theirs[:len(mine)] else mine
        for section, k, row in made:
            target = result
            for key in section:
                target = target.setdefault(key, {})
            target[k] = row
        return result

    if (a.methods and a.ks) or a.stacked or a.warm or a.stack_cost:  # the class-conditional base only for its rows
        judge = Judge(a, base_dir, work)
        people = draw_people(judge.names, max([*a.ks, *a.stacked, *a.warm, a.stack_cost, 1]), a.seed, a.exclude)
        out["people_order"] = people
    for method in a.methods:
        extra, per_person = stop_overrides(a, METHODS[method])  # legato: the config as it is (its early stop)
        for k in a.ks:
            run = work / "one_fit" / method / f"k{k}{stop_tag(per_person)}"
            fit = cached_fit(a, json.dumps(people[:k]), run, extra)
            record(["one_fit", method], k, scored(judge, run, run / "weights", people[:k], cost(fit, run, per_person)))

    request_args, cap = capped_requests(a)
    for section, requests, sizes in (("stacked", stack_requests, a.stacked), ("warm", warm_requests, a.warm)):
        if not sizes:
            continue
        variant, tag = stacked_variant(a) if section == "stacked" else ([], "")
        root = work / f"{section}{stop_tag(a.stop_per_person)}{cap}{tag}"
        for k, run, fit in requests(request_args, root, people[:max(sizes)], variant):
            if k in sizes:  # the deployed model after k requests, scored and timed
                record([section], f"{k}{cap}{tag}", scored(judge, run, run / "weights", people[:k], {
                    **cost(fit, run, a.stop_per_person), "request_seconds_total": fit.get("wall_time_s"),
                    **({"request_max_steps": a.request_steps} if cap else {}),
                    **({"retain_teacher": a.retain_teacher} if tag else {}),
                    "sampling_seconds_per_step_vs_base": judge.sampling_step_ratio(run / "weights")}))

    if a.stack_cost:  # the cost of a deployed stack of k requests, k = 1..N
        root = work / f"stack_cost{stop_tag(a.stop_per_person)}"
        for k, run, _ in stack_requests(a, root, people[:a.stack_cost], ["--trainer.max_steps", "1"]):
            record(["stack_cost"], k, {"people": people[:k], "commit": git_commit(),
                                       "sampling_seconds_per_step_vs_base": judge.sampling_step_ratio(run / "weights")})

    if a.t2i_ks:
        t2i = text_to_image_args(a)
        templates = yaml.safe_load(Path(t2i.unlearn_config).read_text())["model"]["init_args"]["prompt_templates"]
        t2i_judge = Judge(t2i, Path(t2i.base), work / "t2i", templates)
        t2i_people = draw_people(t2i_judge.names, max(a.t2i_ks), a.seed, a.exclude)
        for k in a.t2i_ks:
            run = work / "t2i" / f"k{k}"
            fit = cached_fit(t2i, json.dumps(t2i_people[:k]), run)
            record(["t2i"], k, scored(t2i_judge, run, run / "weights", t2i_people[:k], cost(fit, run)))
    return write_results(a, merged())


def stack_requests(a: argparse.Namespace, root: Path, people: list[str], extra: list[str] = ()):
    """One legato request per person under ``root``, each trained on top of the previous artifact (cached): yields
    ``(k, run, fit)`` for the stack of the first k."""
    previous: list[str] = []
    for k, person in enumerate(people, 1):
        run = root / f"request{k}"
        on_top = ["--model.init_args.previous_adapters", json.dumps(previous)] if previous else []
        yield k, run, cached_fit(a, json.dumps([person]), run, stop_overrides(a, [*on_top, *extra])[0])
        previous = [str(run / "weights")]  # the new artifact holds the earlier ones


def warm_requests(a: argparse.Namespace, root: Path, people: list[str], extra: list[str] = ()):
    """One legato request per person under ``root``, each warm-started from the previous artifact and forgetting
    everyone so far (``model.warm_start``; cached): yields ``(k, run, fit)``, one artifact for the first k."""
    for k in range(1, len(people) + 1):
        run = root / f"request{k}"
        warm = ["--model.init_args.warm_start", str(root / f"request{k - 1}" / "weights")] if k > 1 else []
        yield k, run, cached_fit(a, json.dumps(people[:k]), run, stop_overrides(a, [*warm, *extra])[0])


def kept_rows(a: argparse.Namespace, out: dict) -> dict:
    """``out`` with the existing results file's rows that this run does not remake (``--update``)."""
    file = Path(a.out) / "many_people.json"
    if not file.is_file():
        return out
    before = json.loads(file.read_text())
    cap, tag = capped_requests(a)[1], stacked_variant(a)[1]
    remade = {("one_fit", m, str(k)) for m in a.methods for k in a.ks}
    remade |= {("stacked", f"{k}{cap}{tag}") for k in a.stacked}
    remade |= {("warm", f"{k}{cap}") for k in a.warm}
    remade |= {("t2i", str(k)) for k in a.t2i_ks} | {("stack_cost", str(k + 1)) for k in range(a.stack_cost)}

    def kept(path: tuple, rows: dict) -> dict:
        return {k: {"command": before["command"], **r} for k, r in rows.items() if (*path, k) not in remade}

    out["people_order"] = before.get("people_order", [])
    out["one_fit"] = {m: kept(("one_fit", m), ks) for m, ks in before.get("one_fit", {}).items()}
    for section in SECTIONS[1:]:
        out[section] = kept((section,), before.get(section, {}))
    return out


def text_to_image_args(a: argparse.Namespace) -> argparse.Namespace:
    """The fit arguments for the text-to-image base, pretrained first when ``--t2i-base`` is missing."""
    if not (Path(a.t2i_base) / "model_index.json").is_file():
        run_cli(a.t2i_pretrain_config, ["--model.init_args.output_dir", a.t2i_base, "--data.init_args.root", a.root,
                                        *shlex.split(a.t2i_pretrain_args)])
    return argparse.Namespace(**{**vars(a), "base": a.t2i_base, "unlearn_config": a.t2i_unlearn_config,
                                 "unlearn_args": a.t2i_unlearn_args})


def write_results(a: argparse.Namespace, out: dict) -> dict:
    rows = [*(r for ks in out["one_fit"].values() for r in ks.values()),
            *(r for s in SECTIONS[1:] for r in out[s].values())]
    commands = dict.fromkeys([out["command"], *(r.get("command", out["command"]) for r in rows)])
    md = ["# Many people erased from the LFW base", "",
          "Command" + ("s (rows of earlier runs kept by --update; each row records its own)" if len(commands) > 1
                       else "") + ": " + "; ".join(f"`{c}`" for c in commands) + f" (commit {out['commit']})", "",
          "Erased people in drawing order (dev people excluded): " + ", ".join(out["people_order"]) + ".", "",
          "acc_erased: share of the erased people's samples still identified as them (base ≈ their `before`); "
          "acc_kept: the same for the other people (base in parentheses); FD_pre: Fréchet distance of the kept "
          "people's dlib embeddings, base vs unlearned (0 = unchanged); face_rate_erased: MTCNN finds a face in the "
          "erased people's samples. Brackets: bootstrap 95% intervals; overlapping intervals are a tie.", ""]
    header = ["method", "k", *COLUMNS, "moved_erased", "trainable_params", "steps", "seconds_per_step",
              "peak_rss_mb", "seconds_total"]

    def row(label: str, r: dict) -> list:
        kept = f"{with_interval(r, 'acc_kept')} ({r['acc_kept_before']:.3f})"
        if r.get("stop_per_person"):
            label += f" (stop: {r['stop_per_person']} per person)"
        if r.get("request_max_steps"):
            label += f" (<= {r['request_max_steps']} steps a request)"
        if r.get("retain_teacher"):
            label += f" (others held to the {r['retain_teacher']})"
        return [label, len(r["people"]), with_interval(r, "acc_erased"), kept, with_interval(r, "FD_pre"),
                with_interval(r, "face_rate_erased"), f"{r['moved_erased']:.2f}", f"{r['trainable_params']:,}",
                r.get("steps_run"), r.get("seconds_per_step"), r.get("peak_rss_mb"), r.get("seconds_total")]

    md += ["## One fit for k people", ""]
    md += markdown_table(header, [row(m, r) for m, ks in out["one_fit"].items() for r in ks.values()])
    for section, label, title in (
        ("stacked", "legato stack", ["## k requests stacked (legato, one person each)"]),
        ("warm", "legato warm", ["## k requests warm-started (legato, one person each, `model.warm_start`)", "",
                                 "Request k starts from request k-1's artifact and forgets the first k people: one "
                                 "artifact, whatever k."])):
        md += ["", *title, ""]
        md += markdown_table([*header, "sampling step vs base"],
                             [[*row(label, r), f"{r['sampling_seconds_per_step_vs_base']:.2f}"]
                              for r in out[section].values()])
    if out["stack_cost"]:
        md += ["", "Sampling cost of a deployed stack of k requests against the base (one guided DDIM step of 8 samples, "
               "the median of 7 ratios, stack and base timed alternately; requests trained one step each: the compute does not "
               "depend on the weights, so this is the cost, not the quality, of such a stack):", ""]
        md += markdown_table(["k", *out["stack_cost"]], [["sampling step vs base", *(
            f"{r['sampling_seconds_per_step_vs_base']:.2f}" for r in out["stack_cost"].values())]])
    md += ["", "## Text-to-image base: k names in one fit (legato)", ""]
    if out["t2i"]:
        largest = max(out["t2i"].values(), key=lambda r: len(r["people"]))["people"]
        md += [f"Names erased, the first k of: {', '.join(largest)}.", ""]
        md += markdown_table(header, [row("legato t2i", r) for r in out["t2i"].values()])
    else:
        md += ["Not run (`--t2i-ks`)."]
    return write_report(a.out, "many_people", out, md)


if __name__ == "__main__":
    main()
