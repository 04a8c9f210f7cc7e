"""Where one unlearning step's time goes, per method and model size, against the step's floor.

    python benchmarks/step_profile.py                 # LFW UNet (~10 min on 2 idle cores) and SD-1.5 size (~40 min)
    python benchmarks/step_profile.py --models lfw    # the LFW UNet only

One step is ``UnlearningModule.compute_losses`` + backward + AdamW, the objective of
``configs/legato_lfw.yaml`` (negative target, adjacency on; without its stranger term, one more student row
of a retain photo, ~1/9 of the step), on real LFW batches (George_W_Bush
forgotten). Its time is split by hooks into: conditions and noise, the teacher's frozen UNet forwards,
the student's forward (and inside it each ODE adapter's solve), the backward and the optimizer step.
A Lightning fit of the same module and data (LFW only) adds what the trainer costs around the step:
data loading, the loop and logging, and one validation pass (amortised over a default fit's steps).

The **floor** is what any method needs for this objective: the teacher's frozen forwards, the
student rows' frozen forward with the gradient taken from the first trained stage on, and the
backward from the loss to that stage (the method's own computation costs nothing). The ratio
step / floor says how much a method adds on top of the frozen network it trains against.

Models: ``lfw`` (the LFW base architecture of configs/pretrain_lfw.yaml, 32x32, random weights) and
``sd15`` (a ``UNet2DConditionModel`` of SD 1.5's published size, pixel space at 64x64 with a one-layer
CLIP text encoder of width 768; random weights: time and memory do not depend on them). Each
(model, method) runs in its own child process, so peak RSS is its own. Writes
benchmarks/results/step_profile.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "faces"
sys.path.insert(0, str(REPO / "benchmarks"))

from sd_scale_cost import SD15_UNET  # noqa: E402

from harness import git_commit  # noqa: E402

METHODS = ["legato", "lora", "full"]
MODELS = {"lfw": {"image_size": 32, "batch_size": 8}, "sd15": {"image_size": 64, "batch_size": 1}}
FORGET = "George_W_Bush"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--steps", type=int, nargs=2, default=[6, 1], metavar=("LFW", "SD15"),
                   help="timed steps per measurement for lfw and sd15 (after --warmup)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--root", default=str(FACES))
    p.add_argument("--work", default="runs/step_profile", help="where the random-weight LFW base is built")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--memory-limit-gb", type=float, default=22.0, help="address-space limit of each child")
    p.add_argument("--update", action="store_true",
                   help="keep the other (model, method) runs of the existing results file; rerun only the ones given")
    p.add_argument("--unet-config", help="JSON UNet2DConditionModel kwargs for sd15 instead of SD 1.5's (for tests)")
    p.add_argument("--worker", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    return p


class Clock:
    """Accumulates wall seconds per key; ``span(key)`` times a block, hooks time module calls."""

    def __init__(self):
        self.total: dict[str, float] = defaultdict(float)
        self._open: dict[int, float] = {}

    @contextmanager
    def span(self, key: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.total[key] += time.perf_counter() - start

    def time_module(self, module, key_of) -> None:
        """Time every call of ``module``; ``key_of()`` names the bucket at call time."""
        def pre(mod, args):
            self._open[id(mod)] = time.perf_counter()

        def post(mod, args, out):
            self.total[key_of()] += time.perf_counter() - self._open.pop(id(mod))

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def method_spec(method: str, config: dict) -> tuple[object, float]:
    """The method as configs/legato_lfw.yaml and compare_methods.py train it, and its learning rate."""
    if method == "legato":
        return config["method"], config["lr"]
    if method == "lora":
        return {"class_path": "legato_pl.methods.LoRA"}, config["lr"]
    return {"class_path": "legato_pl.methods.Full"}, 1e-4


def build_module(model: str, method: str, work: Path, root: Path, sd_unet: dict | None = None):
    """An UnlearningModule with the default objective on the ``model`` base, and its datamodule."""
    import torch

    from legato_pl.data import IdentityDataModule
    from legato_pl.models import UnlearningModule
    from legato_pl.models import unlearning as unlearning_module

    config = yaml.safe_load((REPO / "configs" / "legato_lfw.yaml").read_text())["model"]["init_args"]
    spec, lr = method_spec(method, config)
    objective = {k: config[k] for k in ("forget_target", "eta", "w_forget", "w_retain", "w_trajectory", "w_adjacency")}
    size = MODELS[model]
    if model == "lfw":
        from scaling import make_random_base

        base = str(make_random_base(work / "base_lfw", size["image_size"], root))
    else:  # an SD-1.5-sized text-to-image base, built in memory (3.4 GB of fp32 weights are never written)
        from legato_pl.conditioning import DEFAULT_TEMPLATES, TextConditioning
        from legato_pl.models.base import BaseModel
        from legato_pl.models.text_to_image import build_text_to_image

        torch.manual_seed(0)
        unet_config = {k: v for k, v in (sd_unet or SD15_UNET).items()
                       if k not in ("in_channels", "out_channels", "cross_attention_dim", "sample_size")}
        pipe = build_text_to_image(unet_config, {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 1,
                                                 "num_attention_heads": 12})
        text = TextConditioning(pipe.tokenizer, pipe.text_encoder, [], DEFAULT_TEMPLATES, "a person")
        in_memory = BaseModel(pipe.unet, pipe.scheduler, [], text)
        unlearning_module.load_base_model = lambda *args, **kwargs: in_memory
        base = "in-memory SD-1.5-sized pipeline"
    module = UnlearningModule(base, method=spec, lr=lr, **objective)
    dm = IdentityDataModule(forget=FORGET, root=str(root), image_size=size["image_size"], batch_size=size["batch_size"])
    return module, dm


def first_trained_stage(module) -> str:
    """The name of the first module, in forward order, whose output depends on trained parameters."""
    stages = getattr(getattr(module.method, "adapters", None), "stage_channels", None)
    if stages:  # ODE adapters: the first adapted stage (down < mid < up, then by index)
        rank = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
        return min(stages, key=lambda n: (rank.get(n.split(".")[0], 3), n))
    return "conv_in"  # LoRA (every ResNet conv) and full: the first layer


def worker(model: str, method: str, a: argparse.Namespace) -> dict:
    import torch

    torch.manual_seed(0)
    sd_unet = json.loads(a.unet_config) if a.unet_config else None
    module, dm = build_module(model, method, Path(a.work), Path(a.root), sd_unet)
    dm.setup("fit")
    module.bind_data(dm)
    module.train()
    opt = module.configure_optimizers()
    clock = Clock()
    teacher_unet = None
    with module.method.teacher() as t:
        teacher_unet = t
    clock.time_module(module.unet, lambda: "student_forward" if torch.is_grad_enabled() else "teacher_forward")
    if teacher_unet is not module.unet:  # full: a frozen copy is the teacher
        clock.time_module(teacher_unet, lambda: "teacher_forward")
    for name, adapter in getattr(getattr(module.method, "adapters", None), "adapters", {}).items():
        clock.time_module(adapter, lambda name=name: f"ode_solve/{name.replace('__', '.')}")
    # the UNet calls of the objective, kept for the floor: (grad?, x, t, condition)
    calls: list[tuple[bool, object, object, object]] = []
    predict = module.conditioning.predict

    def recording_predict(unet, x, t, cond):
        calls.append((torch.is_grad_enabled(), x, t, cond))
        return predict(unet, x, t, cond)

    module.conditioning.predict = recording_predict
    loader = iter(dm.train_dataloader())
    steps = a.steps[0] if model == "lfw" else a.steps[1]
    step_rows, floor_rows = [], []
    stage = first_trained_stage(module)
    for i in range(a.warmup + steps):
        batch = dm.on_after_batch_transfer(next(loader), 0)
        clock.total.clear()
        calls.clear()
        start = time.perf_counter()
        with clock.span("objective"):
            loss = module.total_loss(module.compute_losses(batch, noise_step=i))
        with clock.span("backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with clock.span("optimizer"):
            opt.step()
        row = dict(clock.total)
        row["step"] = time.perf_counter() - start
        row["ode_solve"] = sum(v for k, v in row.items() if k.startswith("ode_solve/"))
        row["conditions_and_noise"] = row["objective"] - row.get("teacher_forward", 0) - row.get("student_forward", 0)
        row["floor"] = floor_time(module, calls, stage, predict)
        if i >= a.warmup:
            step_rows.append(row)
            floor_rows.append(row["floor"])
    keys = sorted({k for r in step_rows for k in r})
    mean = {k: statistics.fmean(r.get(k, 0.0) for r in step_rows) for k in keys}
    out = {"model": model, "method": method, "steps_timed": steps, "seconds": mean,
           "ratio_step_vs_floor": mean["step"] / mean["floor"],
           "trainable_params": sum(p.numel() for p in module.method.trainable_parameters()),
           "unet_params": sum(p.numel() for p in module.unet.parameters()),
           "rows_per_step": {"teacher": sum(len(x) for g, x, _, _ in calls if not g),
                             "student": sum(len(x) for g, x, _, _ in calls if g)}}
    if model == "lfw":
        out["lightning"] = lightning_overhead(module, dm, a)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def floor_time(module, calls, stage, predict) -> float:
    """The floor of this step: the teacher's frozen forwards as the objective made them, the student rows'
    frozen forward with the gradient starting at ``stage``, and the backward to there."""
    import torch

    def start_gradient(mod, args, out):
        (out[0] if isinstance(out, tuple) else out).requires_grad_(True)

    start = time.perf_counter()
    with module.method.teacher() as frozen:
        with torch.no_grad():
            for grad, x, t, cond in calls:
                if not grad:
                    predict(frozen, x, t, cond)
        handle = frozen.get_submodule(stage).register_forward_hook(start_gradient)
        try:
            student = [predict(frozen, x, t, cond.detach()) for grad, x, t, cond in calls if grad]
        finally:
            handle.remove()
        sum(s.square().mean() for s in student).backward()
    return time.perf_counter() - start


def lightning_overhead(module, dm, a: argparse.Namespace) -> dict:
    """Seconds a Lightning fit of this module spends per step in the step, between steps (data, loop,
    logging) and in one validation pass, and that pass amortised over the default fit."""
    import lightning.pytorch as pl

    stamps: dict[str, list[float]] = defaultdict(list)

    class Stamp(pl.Callback):
        def on_train_batch_start(self, *args) -> None:
            stamps["start"].append(time.perf_counter())

        def on_train_batch_end(self, *args) -> None:
            stamps["end"].append(time.perf_counter())

        def on_validation_start(self, *args) -> None:
            stamps["val_start"].append(time.perf_counter())

        def on_validation_end(self, *args) -> None:
            stamps["val_end"].append(time.perf_counter())

    fit = yaml.safe_load((REPO / "configs" / "legato_lfw.yaml").read_text())["trainer"]
    total = a.warmup + a.steps[0]
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=total, log_every_n_steps=fit["log_every_n_steps"],
                         logger=pl.loggers.TensorBoardLogger(str(Path(a.work) / "lightning_logs")),
                         enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=fit.get("limit_val_batches") or 1.0,
                         val_check_interval=total, check_val_every_n_epoch=None, callbacks=[Stamp()])
    del module.conditioning.predict  # the class's own again (no recording)
    trainer.fit(module, datamodule=dm)
    in_step = [e - s for s, e in zip(stamps["start"], stamps["end"])][a.warmup:]
    between = [s - e for e, s in zip(stamps["end"], stamps["start"][1:])][a.warmup:]
    validation = stamps["val_end"][0] - stamps["val_start"][0] if stamps["val_end"] else 0.0
    max_steps = fit["max_steps"]
    val_every = fit.get("val_check_interval")  # the default: once per epoch of the training data (sanity steps aside)
    runs = max_steps // (val_every if isinstance(val_every, int) else len(dm.train_dataloader()))
    limit = fit.get("limit_val_batches")
    return {"step": statistics.fmean(in_step), "between_steps": statistics.fmean(between) if between else 0.0,
            "validation_pass": validation, "validation_passes_per_fit": runs,
            "validation_limit_batches": limit, "validation_per_step": validation * runs / max_steps}


def run_child(model: str, method: str, a: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", model, method, "--steps", *map(str, a.steps), "--warmup",
           str(a.warmup), "--root", a.root, "--work", a.work, *(["--unet-config", a.unet_config] if a.unet_config else [])]
    print("+", shlex.join(cmd), flush=True)
    limit = int(a.memory_limit_gb * 2**30)
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"model": model, "method": method, "error": f"exit {proc.returncode}: {tail[:300]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


PARTS = ["conditions_and_noise", "teacher_forward", "student_forward", "ode_solve", "backward", "optimizer"]


def markdown(out: dict) -> list[str]:
    commands = dict.fromkeys(r.get("command", out["command"]) for r in out["runs"]) or {out["command"]: None}
    md = ["# Where one unlearning step's time goes", "",
          "Command" + ("s (rows of earlier runs kept by --update)" if len(commands) > 1 else "") + ": "
          + "; ".join(f"`{c}`" for c in commands) + f" (commit {out['commit']})", "",
          "Seconds per step (mean over the timed steps) of `compute_losses` + backward + AdamW with the default "
          "objective; `ode_solve` is part of `student_forward`. Floor = the teacher's frozen forwards + the "
          "student rows' frozen forward and backward from the first trained stage (the method itself costing "
          "nothing). Each (model, method) runs alone in its own process, one after another, on a machine that may be "
          "shared: compare methods by step / floor (both measured in the same steps), not by absolute seconds.", ""]
    header = ["model", "method", *PARTS, "step", "floor", "step / floor", "trainable", "peak RSS MB"]
    md += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in out["runs"]:
        if "error" in r:
            md.append(f"| {r['model']} | {r['method']} | {r['error']} |" + " |" * (len(header) - 3))
            continue
        s = r["seconds"]
        md.append("| " + " | ".join([r["model"], r["method"], *[f"{s.get(k, 0):.3f}" for k in PARTS],
                                     f"{s['step']:.3f}", f"{s['floor']:.3f}", f"{r['ratio_step_vs_floor']:.2f}",
                                     f"{r['trainable_params']:,}", f"{r['peak_rss_mb']:.0f}"]) + " |")
    light = [r for r in out["runs"] if "lightning" in r]
    if light:
        md += ["", "## Around the step (LFW, Lightning fit of the same module and data)", "",
               "| method | bare step | Lightning step | between steps (data, loop, logging) | one validation pass "
               "| passes per default fit | validation per step |", "|" + " --- |" * 7]
        for r in light:
            g = r["lightning"]
            md.append(f"| {r['method']} | {r['seconds']['step']:.3f} | {g['step']:.3f} | {g['between_steps']:.3f} | "
                      f"{g['validation_pass']:.2f} | {g['validation_passes_per_fit']} | {g['validation_per_step']:.3f} |")
    return md


def main(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    if a.worker:
        print(json.dumps(worker(*a.worker, a)))
        return {}
    runs = []
    command = shlex.join(["python", "benchmarks/step_profile.py", *(argv if argv is not None else sys.argv[1:])])
    out_dir = Path(a.out)
    previous = out_dir / "step_profile.json"
    if a.update and previous.is_file():  # the other rows keep the command and commit that made them
        before = json.loads(previous.read_text())
        runs += [{"command": before["command"], "commit": before.get("commit"), **r} for r in before["runs"]
                 if not (r["model"] in a.models and r["method"] in a.methods)]
    out = {"command": command, "commit": git_commit(), "runs": runs}
    out_dir.mkdir(parents=True, exist_ok=True)
    for model in a.models:
        for method in a.methods:
            runs.append({"command": command, "commit": out["commit"], **run_child(model, method, a)})
            print(json.dumps(runs[-1]), flush=True)
            (out_dir / "step_profile.json").write_text(json.dumps(out, indent=1) + "\n")
            (out_dir / "step_profile.md").write_text("\n".join(markdown(out)) + "\n")
    print("\n".join(markdown(out)))
    return out


if __name__ == "__main__":
    main()
