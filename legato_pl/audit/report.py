"""The audit of one unlearning run: every attack, base vs unlearned, written as audit.json + audit.md + grids.

    python -m legato_pl audit --base_model runs/lfw/base --artifact runs/lfw/adapters \\
        --forget George_W_Bush --root ../shared/data/faces --out runs/lfw/audit

Works for any method's artifact (``load_method``). Each attack is run on the base model too, so every
number has its reference: what the same attack achieves where nothing was forgotten.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torchvision.utils import save_image

from legato_pl.audit.inversion import invert_condition
from legato_pl.audit.judge import IdentityJudge
from legato_pl.audit.membership import denoising_errors, membership_inference
from legato_pl.audit.prompt_attack import prompt_attack
from legato_pl.audit.relearning import relearn
from legato_pl.conditioning import TextConditioning, check_names
from legato_pl.data import IdentityImages
from legato_pl.errors import LegatoInputError
from legato_pl.methods import LoRA, load_method
from legato_pl.methods.artifact import read_method_file
from legato_pl.methods.card import update_model_card
from legato_pl.metrics.encoders import IdentityEncoder
from legato_pl.models.base import load_base_model
from legato_pl.sampling import sample


@dataclass
class AuditSettings:
    samples: int = 32  # forget-person samples per measurement
    guidance_scale: float = 3.0
    sampling_steps: int = 25
    inversion_steps: int = 300
    inversion_lr: float = 5e-3
    relearn_k: tuple[int, ...] = (1, 4, 16)
    relearn_unrelated: int = 16  # photos of other people for the unrelated fine-tune (0: skip)
    relearn_params: tuple[str, ...] = ("method",)
    relearn_steps: int = 200
    relearn_eval_every: int = 25
    relearn_lr: float = 1e-4
    relearn_reference: bool = True  # also relearn the person on a base that never knew them (class row reset)
    heldout_fraction: float = 0.2
    prompt_templates: tuple[str, ...] = ()  # text models: the fit's templates (empty: the defaults)
    prompt_attack_tokens: int = 5  # text models: adversarial prefix tokens (UnlearnDiffAtk style)
    prompt_attack_steps: int = 40  # per template; 0 skips the attack
    seed: int = 0


@dataclass
class AuditResult:
    forget: str
    method: str
    settings: dict
    plain: dict = field(default_factory=dict)  # the model's own conditioning
    condition_inversion: dict = field(default_factory=dict)
    membership_inference: dict = field(default_factory=dict)
    relearning: dict = field(default_factory=dict)
    prompt_attack: dict = field(default_factory=dict)  # text models only
    seconds: float = 0.0

    def verdicts(self) -> list[str]:
        """One plain line per attack: is the person recoverable?"""
        lines = []
        ci = self.condition_inversion
        if ci:
            recovered = ci["acc_unlearned"] >= 0.5 * ci["acc_base"] and ci["acc_base"] > 0
            lines.append(f"condition inversion: {'RECOVERABLE' if recovered else 'not recovered'} "
                         f"(accuracy {ci['acc_unlearned']:.2f} vs {ci['acc_base']:.2f} on the base, {ci['steps']} steps)")
        mi = self.membership_inference
        if mi:
            leaks = mi["auc_after"] > 0.6
            lines.append(f"membership inference: {'training photos still DISTINGUISHABLE' if leaks else 'no clear signal'} "
                         f"(AUC {mi['auc_after']:.2f} after vs {mi['auc_before']:.2f} before; 0.5 = none)")
        pa = self.prompt_attack
        if pa:
            lines.append(f"adversarial prompt ({pa['tokens']} prefix tokens, {pa['steps']} steps): "
                         f"{'RECOVERABLE' if pa['attack_success_rate'] > 0 else 'not recovered'} on "
                         f"{pa['attack_success_rate']:.0%} of the prompt templates")
        for name, r in self.relearning.items():
            back = r["steps_to_target"]
            lines.append(f"relearning ({name}): " + (f"person BACK after {back} steps" if back is not None else
                         f"not back within {r['budget']} steps") + f" (target accuracy {r['target']:.2f})")
        return lines

    def markdown(self) -> str:
        p, ci, mi = self.plain, self.condition_inversion, self.membership_inference
        md = [f"# Audit: {self.method} forgetting {self.forget}", "", *[f"- {v}" for v in self.verdicts()], "",
              "| attack | base | unlearned |", "| --- | --- | --- |",
              f"| own condition: accuracy | {p['acc_base']:.3f} | {p['acc_unlearned']:.3f} |"]
        if ci:
            md.append(f"| condition inversion ({ci['steps']} steps): accuracy | {ci['acc_base']:.3f} | "
                      f"{ci['acc_unlearned']:.3f} |")
        if mi:
            md += [f"| membership inference: AUC | {mi['auc_before']:.3f} | {mi['auc_after']:.3f} |",
                   f"| membership inference: TPR at 1% FPR | {mi['tpr_at_1pct_before']:.3f} | {mi['tpr_at_1pct_after']:.3f} |"]
        for template, r in self.prompt_attack.get("per_template", {}).items():
            md.append(f"| adversarial prompt on {template!r}: accuracy plain / attacked | {r['acc_base']:.3f} | "
                      f"{r['acc_unlearned']:.3f} / {r['acc_attacked']:.3f} |")
        for name, r in self.relearning.items():
            md.append(f"| relearning {name}: steps to accuracy {r['target']:.2f} | | "
                      f"{r['steps_to_target'] if r['steps_to_target'] is not None else '> ' + str(r['budget'])} |")
        md += ["", f"Samples per accuracy: {self.settings['samples']}; MIA: {mi.get('members', 0)} training vs "
               f"{mi.get('nonmembers', 0)} held-out photos of the person. Settings: `{json.dumps(self.settings)}`"]
        return "\n".join(md) + "\n"


def run_audit(
    base_model: str,
    artifact: str,
    forget: str,
    root: str | None,
    encoder: IdentityEncoder,
    settings: AuditSettings | None = None,
    out: str | Path | None = None,
    base_cache: str | Path | None = None,
    update_card: bool = True,
    device: str | torch.device = "cpu",
) -> AuditResult:
    """Every attack on the ``artifact`` (any method) and on the base, for identity ``forget``.

    Class-conditional and text-to-image bases alike (through the base's conditioning); text models also get
    the adversarial prompt search, with the prompt templates of ``settings`` (the fit's, ideally).
    ``base_cache``: a directory where the base model's side of every attack is kept and reused when the base,
    person, photos, judge and settings are the same, so auditing several methods pays for it once.
    ``update_card``: write the verdicts into the artifact's model card (``README.md``). ``device``: where the
    models run (the judge's encoder stays on the CPU).
    """
    s = settings or AuditSettings()
    start = time.perf_counter()
    templates = list(s.prompt_templates) or None

    def fresh(unlearned: bool):
        unet = load_base_model(base_model, prompt_templates=templates).unet.eval().to(device)
        return unet, (load_method(unet, artifact, strength=1.0) if unlearned else None)

    base = load_base_model(base_model, prompt_templates=templates)
    conditioning = base.conditioning
    if conditioning is None:
        raise LegatoInputError(f"{base_model} is unconditional: there is no identity to audit")
    conditioning.to(device)
    base.use_identities([forget], f"base model {base_model}")  # a class model must know the person
    meta = read_method_file(artifact)
    size = base.unet.config.sample_size * conditioning.latent_factor
    # a class model's people are its classes; a text model draws any name: the photos' people
    data = IdentityImages(root, size, s.heldout_fraction, identities=None if conditioning.any_name else base.identities)
    base.use_identities(data.names, f"base model {base_model}")
    check_names([forget], data.names, f"the photos in {root or 'the embedded synthetic set'}")
    f = base.identities.index(forget)
    members, nonmembers = data.train[forget], data.heldout[forget]
    if len(members) == 0 or len(nonmembers) == 0:
        raise LegatoInputError(f"{forget} needs training and held-out photos (heldout_fraction {s.heldout_fraction})")
    judge = IdentityJudge(encoder, {base.identities.index(n): data.heldout[n] for n in data.names
                                    if len(data.heldout[n])}, size)
    sampling = {"guidance_scale": s.guidance_scale, "num_inference_steps": s.sampling_steps}
    labels = torch.full((s.samples,), f)

    result = AuditResult(forget, meta.get("method", "?"), asdict(s))
    grids: dict[str, torch.Tensor] = {}

    def attacks(unlearned: bool) -> None:
        """Sampling, inversion, membership inference (and the prompt attack) on one side, base or unlearned."""
        tag = "unlearned" if unlearned else "base"
        unet, method = fresh(unlearned)
        grids[f"own_{tag}"] = sample(unet, base.scheduler, labels, conditioning=conditioning, seed=s.seed, **sampling)
        result.plain[f"acc_{tag}"] = judge.accuracy(grids[f"own_{tag}"], f)
        if s.inversion_steps:  # from "nobody in particular": the null class / the word "person"
            inv = invert_condition(unet, base.scheduler, members, conditioning.soft_init(unet), steps=s.inversion_steps,
                                   lr=s.inversion_lr, seed=s.seed, conditioning=conditioning)
            grids[f"inversion_{tag}"] = sample(unet, base.scheduler, labels, conditioning=conditioning, seed=s.seed,
                                               embeddings=inv.condition.expand(s.samples, *inv.condition.shape[1:]),
                                               **sampling)
            result.condition_inversion[f"acc_{tag}"] = judge.accuracy(grids[f"inversion_{tag}"], f)
            result.condition_inversion[f"final_loss_{tag}"] = sum(inv.losses[-20:]) / len(inv.losses[-20:])
            result.condition_inversion["steps"] = s.inversion_steps
        errors = [denoising_errors(unet, base.scheduler, x, f, seed=s.seed, conditioning=conditioning)
                  for x in (members, nonmembers)]
        mi = membership_inference(*errors)
        after = "after" if unlearned else "before"
        result.membership_inference.update({f"auc_{after}": mi["auc"], f"tpr_at_1pct_{after}": mi["tpr_at_1pct"],
                                            "members": mi["members"], "nonmembers": mi["nonmembers"]})
        if unlearned and isinstance(conditioning, TextConditioning) and s.prompt_attack_steps:
            attack = prompt_attack(unet, base.scheduler, method, conditioning, members, f, judge,
                                   tokens=s.prompt_attack_tokens, steps=s.prompt_attack_steps, samples=s.samples,
                                   seed=s.seed, sampling=sampling)
            result.prompt_attack = asdict(attack)

    def relearning(unlearned: bool) -> None:
        """Fine-tune the unlearned model on the person / on others; or (base side) teach a never-seen person."""
        target = 0.5 * result.plain["acc_base"]
        if unlearned:
            others = [n for n in data.names if n != forget]
            unrelated = torch.cat([data.train[n] for n in others])[: s.relearn_unrelated]
            unrelated_labels = torch.cat([torch.full((len(data.train[n]),), base.identities.index(n)) for n in others])
            runs = {f"k={k}": (members[:k], torch.full((min(k, len(members)),), f)) for k in s.relearn_k}
            if s.relearn_unrelated:
                runs["unrelated"] = (unrelated, unrelated_labels[: s.relearn_unrelated])
            plan = [(f"{params} {name}", params, *runs[name]) for params in s.relearn_params for name in runs]
        elif s.relearn_reference and s.relearn_k:  # the same attack on a model that never knew the person
            k = max(s.relearn_k)
            plan = [(f"reference: new person, lora k={k}", "method", members[:k], torch.full((min(k, len(members)),), f))]
        else:
            plan = []
        for key, params, photos, photo_labels in plan:
            unet, method = fresh(unlearned)
            relearn_conditioning = conditioning
            if not unlearned:  # learning the person anew: their class row is "nobody" / their name one never seen
                relearn_conditioning, method = conditioning.as_stranger(unet, f), LoRA(unet, rank=4)
            r = relearn(unet, base.scheduler, method, photos, photo_labels, judge, f, target=target,
                        conditioning=relearn_conditioning, params=params, max_steps=s.relearn_steps,
                        eval_every=s.relearn_eval_every, lr=s.relearn_lr, eval_samples=s.samples, seed=s.seed,
                        sampling=sampling)
            result.relearning[key] = {"steps_to_target": r.steps_to_target, "curve": [list(c) for c in r.curve],
                                      "photos": len(photos), "target": target, "budget": s.relearn_steps}

    # the base side depends only on the base, the person, the data and the settings: shared by every method's audit
    key = {"base_model": str(Path(base_model).resolve()) if Path(base_model).exists() else base_model,
           "forget": forget, "root": str(Path(root).resolve()) if root else None, "judge": type(encoder).__name__,
           "settings": {k: v for k, v in asdict(s).items() if k != "relearn_params"}}
    cached = _read_base_side(Path(base_cache), key) if base_cache else None
    if cached is None:
        attacks(unlearned=False)
        relearning(unlearned=False)
        if base_cache:
            _write_base_side(Path(base_cache), key, result, grids)
    else:
        sections, base_grids = cached
        for name, values in sections.items():
            getattr(result, name).update(values)
        grids.update(base_grids)
    attacks(unlearned=True)
    relearning(unlearned=True)
    result.relearning = dict(sorted(result.relearning.items(), key=lambda kv: kv[0].startswith("reference")))
    result.seconds = time.perf_counter() - start
    if out is not None:
        write_audit(result, grids, Path(out))
    if update_card:
        update_model_card(artifact, meta, audit={"forget": forget, "verdicts": result.verdicts(), "plain": result.plain,
                                           "report": str(out) if out is not None else None})
    return result


_BASE_SIDE = ("plain", "condition_inversion", "membership_inference", "relearning")


def _read_base_side(cache: Path, key: dict) -> tuple[dict, dict[str, torch.Tensor]] | None:
    path = cache / "base_side.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved["key"] != json.loads(json.dumps(key)):
        return None
    return saved["sections"], torch.load(cache / "base_side_grids.pt")


def _write_base_side(cache: Path, key: dict, result: AuditResult, grids: dict[str, torch.Tensor]) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({k: v[:8].clone() for k, v in grids.items()}, cache / "base_side_grids.pt")
    sections = {name: dict(getattr(result, name)) for name in _BASE_SIDE}
    (cache / "base_side.json").write_text(json.dumps({"key": key, "sections": sections}, indent=1) + "\n")


def write_audit(result: AuditResult, grids: dict[str, torch.Tensor], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(asdict(result), indent=1) + "\n")
    (out / "audit.md").write_text(result.markdown())
    rows = [grids[k][:8] for k in sorted(grids)]
    save_image(torch.cat(rows) * 0.5 + 0.5, out / "audit_grid.png", nrow=8)
    (out / "audit_grid.txt").write_text("rows: " + ", ".join(sorted(grids)) + "\n")
