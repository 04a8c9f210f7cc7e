"""Erase a person *by name* from the text-to-image LFW base; judge every person's name prompts with dlib.

    python benchmarks/t2i_lfw.py --base runs/t2i/base

The base (a ``StableDiffusionPipeline`` directory: CLIP tokenizer, small text encoder, cross-attention
UNet, 32x32 pixels) is trained with configs/pretrain_t2i_lfw.yaml when --base does not exist. The fit
is configs/legato_t2i_lfw.yaml (--steps steps) through the CLI. Then, from fixed seeds (the j-th sample
of person c has seed 1000 c + j at every strength, so before and after differ only by the method):

- ``base_acc``: the base's name prompts for all people (--per-identity each, training templates);
- the forget person's name with the training templates and with paraphrase templates never used in
  training (--forget-samples each), at strength 0 and 1;
- the other people's names (--per-identity each) at strength 0 and 1.

Every accuracy is dlib nearest-centroid identification over all people (held-out photos the fits never
saw), with a bootstrap 95% interval over samples. Writes benchmarks/results/t2i_lfw.{json,md} and
t2i_lfw_grid.png (rows: strength 0, 0.5, 1; columns: the forget person with training templates, with
paraphrases, then three other people).
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import torch
import yaml
from compare_methods import face_rate, scores, seeds_for
from torchvision.utils import save_image

from legato_pl.conditioning import TextConditioning
from legato_pl.methods import load_method
from legato_pl.metrics import UnlearningMetrics, load_encoder
from legato_pl.metrics.faces import FaceRate
from legato_pl.models.base import load_base_model
from legato_pl.sampling import sample

from harness import (
    FACES,
    add_pretrain_and_fit_args,
    check_cached_fit,
    command_line,
    fit_heldout_fraction,
    fit_key,
    fit_unlearning,
    git_commit,
    heldout_by_label,
    run_cli,
    with_interval,
)

PARAPHRASES = ["an image of {}", "{} in a photograph", "a picture showing {}", "{}, face"]


def text_samples(unet, base, conditioning: TextConditioning, labels: torch.Tensor, a, method=None,
                 strength: float = 1.0, seed_offset: int = 0) -> torch.Tensor:
    """Name-prompt samples of ``labels`` (one template drawn per row from the seed) at ``strength``."""
    seeds = [s + seed_offset for s in seeds_for(labels)]
    return sample(unet, base.scheduler, labels, conditioning=conditioning, seeds=seeds, guidance_scale=a.guidance,
                  num_inference_steps=a.steps_ddim, method=method, strength=strength if method else None,
                  seed=seed_offset)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="runs/t2i/base", help="text-to-image base directory (trained if missing)")
    p.add_argument("--root", default=str(FACES))
    add_pretrain_and_fit_args(p, "t2i_lfw", "runs/t2i/benchmark", "configs/pretrain_t2i_lfw.yaml",
                              "configs/legato_t2i_lfw.yaml")
    p.add_argument("--per-identity", type=int, default=8, help="samples per other person (and for base_acc)")
    p.add_argument("--forget-samples", type=int, default=64, help="forget samples per template set")
    p.add_argument("--paraphrases", nargs="+", default=PARAPHRASES, help="templates never used in training")
    p.add_argument("--steps-ddim", type=int, default=25)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--resamples", type=int, default=1000)
    return p


def main(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    base_dir, work = Path(a.base), Path(a.work)
    result: dict = {"command": command_line("t2i_lfw.py", argv), "commit": git_commit(), "forget": a.forget}
    if not (base_dir / "model_index.json").is_file():
        result["pretrain"] = run_cli(a.pretrain_config, ["--model.init_args.output_dir", str(base_dir),
                                                         "--data.init_args.root", a.root, *shlex.split(a.pretrain_args)])
    if not (work / "weights").is_dir():
        (work / "fit.json").write_text(json.dumps(fit_unlearning(a, a.forget, work)) + "\n")
    result["fit"] = json.loads((work / "fit.json").read_text())
    check_cached_fit(result["fit"], base_dir, work, fit_key(a, a.forget))
    fit_config = yaml.safe_load((work / "fit" / "version_0" / "config.yaml").read_text())
    templates = fit_config["model"]["init_args"]["prompt_templates"]
    base = load_base_model(base_dir, prompt_templates=templates)
    names, unet = base.identities, base.unet.eval()
    if a.forget not in names:
        raise SystemExit(f"{a.forget} is not one of the base's people")
    overlap = set(templates) & set(a.paraphrases)
    if overlap:
        raise SystemExit(f"paraphrase templates {sorted(overlap)} are training templates")
    f = names.index(a.forget)
    training = base.text
    paraphrase = TextConditioning(training.tokenizer, training.text_encoder, names, a.paraphrases,
                                  training.anchor_prompt, training.vae)
    image_size = unet.config.sample_size * training.latent_factor  # photos at the decoded samples' size
    real = heldout_by_label(a.root, names, image_size, fit_heldout_fraction(work))
    encoder = load_encoder("dlib")
    metrics = UnlearningMetrics(encoder, real, forget_labels=[f])

    # rows: the forget person (--forget-samples), then --per-identity of every other person
    labels = torch.cat([torch.full((a.forget_samples,), f)] +
                       [torch.full((a.per_identity,), c) for c in range(len(names)) if c != f])
    method = load_method(unet, work / "weights", strength=1.0)
    before = text_samples(unet, base, training, labels, a, method, 0.0)
    after = text_samples(unet, base, training, labels, a, method, 1.0)
    main_scores = scores(metrics, before, after, labels, a.resamples)
    forget_rows = labels == f
    para_labels = labels[forget_rows]
    para_before = text_samples(unet, base, paraphrase, para_labels, a, method, 0.0, seed_offset=500)
    para_after = text_samples(unet, base, paraphrase, para_labels, a, method, 1.0, seed_offset=500)
    para_scores = scores(metrics, para_before, para_after, para_labels, a.resamples)
    # base_acc over all people: the first --per-identity forget rows are the forget person's share
    per_person = torch.cat([torch.nonzero(forget_rows).flatten()[: a.per_identity], torch.nonzero(~forget_rows).flatten()])
    base_scores = scores(UnlearningMetrics(encoder, real, forget_labels=[]), before[per_person], before[per_person],
                         labels[per_person], a.resamples)

    def pick(s: dict, key: str, suffix: str = "") -> dict:
        return {key + suffix: s[key], f"{key}{suffix}_ci": s[f"{key}_ci"]}

    faces = FaceRate()
    face_rates = {}  # MTCNN finds a face in the forget person's samples: a stranger, or noise?
    for suffix, images in [("_before", before[forget_rows]), ("", after[forget_rows]),
                           ("_paraphrase_before", para_before), ("_paraphrase", para_after)]:
        face_rates.update(pick(face_rate(faces, images, a.resamples), "face_rate_forget", suffix))

    result.update({
        "base_acc": base_scores["acc_retain"], "base_acc_ci": base_scores["acc_retain_ci"],
        "acc_forget_before": main_scores["acc_forget_before"], **pick(main_scores, "acc_forget"),
        "acc_forget_paraphrase_before": para_scores["acc_forget_before"],
        **pick(para_scores, "acc_forget", "_paraphrase"),
        "acc_retain_before": main_scores["acc_retain_before"], **pick(main_scores, "acc_retain"),
        **pick(main_scores, "moved_forget"), **pick(para_scores, "moved_forget", "_paraphrase"),
        **pick(main_scores, "FD_pre"), **pick(main_scores, "pixel_change_retain"), **face_rates,
        "different_people_cosine": main_scores.get("different_people_cosine"),
        "samples": {"base_acc": len(per_person), "forget": int(forget_rows.sum()), "forget_paraphrase": len(para_labels),
                    "retain": int((~forget_rows).sum()), "people": len(names)},
        "templates": templates, "paraphrases": a.paraphrases, "steps": a.steps,
        "sampling": {"scheduler": "DDIM", "steps": a.steps_ddim, "guidance_scale": a.guidance},
        "trainable_params": sum(p.numel() for p in method.trainable_parameters()),
        "unet_params": sum(p.numel() for p in unet.parameters()), "encoder": "dlib",
        "unlearn_args": a.unlearn_args,
    })
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    write_grid(unet, base, training, paraphrase, method, f, names, a, out / f"{a.name}_grid.png")
    write_markdown(result, names, out / f"{a.name}.md")
    print((out / f"{a.name}.md").read_text())
    return result


def write_grid(unet, base, training, paraphrase, method, f: int, names: list[str], a, path: Path) -> None:
    """Rows strength 0 / 0.5 / 1; columns: 4 forget (training templates), 4 forget (paraphrases), 3 x 2 others."""
    others = [c for c in range(len(names)) if c != f][:: max(1, (len(names) - 1) // 3)][:3]
    forget = torch.full((4,), f)
    retain = torch.tensor(others).repeat_interleave(2)
    rows = []
    for s in (0.0, 0.5, 1.0):
        rows.append(torch.cat([text_samples(unet, base, training, forget, a, method, s),
                               text_samples(unet, base, paraphrase, forget, a, method, s, seed_offset=500),
                               text_samples(unet, base, training, retain, a, method, s)]))
    grid = torch.cat(rows)
    save_image(grid * 0.5 + 0.5, path, nrow=len(rows[0]), padding=1)


def write_markdown(r: dict, names: list[str], path: Path) -> None:
    iv = lambda k: with_interval(r, k, ".3f")  # noqa: E731
    n = r["samples"]
    md = [f"# Erasing {r['forget']} by name from the text-to-image LFW base", "", f"Command: `{r['command']}`", "",
          f"Base: its name prompts draw the named person with dlib nearest-centroid accuracy {iv('base_acc')} over "
          f"{n['people']} people ({n['base_acc']} samples; chance {1 / n['people']:.3f}).", "",
          "| | strength 0 (base) | strength 1 (unlearned) |", "| --- | --- | --- |",
          f"| acc_forget, training templates ({n['forget']} samples) | {r['acc_forget_before']:.3f} | {iv('acc_forget')} |",
          f"| acc_forget, paraphrases never trained on ({n['forget_paraphrase']} samples) | "
          f"{r['acc_forget_paraphrase_before']:.3f} | {iv('acc_forget_paraphrase')} |",
          f"| acc_retain, the other {n['people'] - 1} people ({n['retain']} samples) | {r['acc_retain_before']:.3f} | "
          f"{iv('acc_retain')} |",
          f"| forget samples moved to another person (training / paraphrase) | 0 | {iv('moved_forget')} / "
          f"{iv('moved_forget_paraphrase')} |",
          f"| face rate of the forget samples, MTCNN (training / paraphrase) | {iv('face_rate_forget_before')} / "
          f"{iv('face_rate_forget_paraphrase_before')} | {iv('face_rate_forget')} / {iv('face_rate_forget_paraphrase')} |",
          f"| FD_pre, the other people (dlib embeddings) | 0 | {iv('FD_pre')} |",
          f"| pixel change per sample, the other people (0-255) | 0 | {iv('pixel_change_retain')} |", "",
          f"Training templates: {', '.join(repr(t) for t in r['templates'])}. Paraphrases: "
          f"{', '.join(repr(t) for t in r['paraphrases'])}. {r['steps']} steps, {r['trainable_params']:,} trainable "
          f"parameters (UNet {r['unet_params']:,}); {r['fit'].get('seconds_per_step', float('nan')):.2f} s/step.", "",
          f"Grid `{Path(path).stem}_grid.png`: rows strength 0 / 0.5 / 1; columns 1-4 {r['forget']} (training "
          "templates), 5-8 the same seeds with paraphrases, then two samples each of three other people."]
    path.write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
