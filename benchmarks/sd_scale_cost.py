"""Cost of one unlearning step on a UNet the size of Stable Diffusion 1.5's, per method, side by side.

    python benchmarks/sd_scale_cost.py                # ~20-40 min on 2 CPU cores, up to ~20 GB RAM (full)

The UNet is ``UNet2DConditionModel`` built from SD 1.5's published config (random weights: speed and
memory do not depend on them), 64x64 latents, CLIP-width (768) text states. One step is what
``UnlearningModule`` does per step, reduced to its cost: a teacher forward without grad and a student
forward + backward + AdamW update, on ``--batch`` rows. Each variant runs in its own child process,
one after another (peak RSS per variant); ``--warmup`` steps are dropped from the timing.

Variants: ``full`` (the whole UNet trains; a frozen teacher copy), ``lora`` (rank 4 on attention and
ResNet convs), ``residual`` and ``legato`` (ODE adapters after every up block, condition
``embedding``), and legato cost reductions that keep its result: adapters on the last two up blocks
only (``legato_last2``), gradient checkpointing of the frozen path (``legato_ckpt``), the adjoint
solver (``legato_adjoint``); the frozen UNet in bf16 (``*_bf16_base``, results key ``methods_bf16_base``);
legato on an SDXL-sized UNet (``legato_sdxl``: SDXL base 1.0's published UNet config, 2.6 B parameters, its
two-encoder text states and ``text_time`` added conditions, ``--sdxl-latent`` latents, results keys ``sdxl_*``;
``--sdxl-bf16-base`` and ``--sdxl-checkpointing`` make SDXL's own 128x128 latents fit in 24 GB: stated in its row).
Writes benchmarks/results/sd_scale_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psutil

from harness import git_commit

REPO = Path(__file__).resolve().parents[1]
SD15_UNET = {  # runwayml/stable-diffusion-v1-5 unet/config.json, the fields that set its size
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "attention_head_dim": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "norm_num_groups": 32,
}
SDXL_UNET = {  # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json, the fields that set its size
    "sample_size": 128, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280], "cross_attention_dim": 2048, "attention_head_dim": [5, 10, 20],
    "transformer_layers_per_block": [1, 2, 10], "use_linear_projection": True,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "addition_embed_type": "text_time", "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
}
ADAPTER = {"hidden": 64, "t_end": 1.6, "step_size": 0.4, "method": "euler", "condition": "embedding"}
VARIANTS = {
    "full": {},
    "lora": {},
    "residual": {"stages": "up"},
    "legato": {"stages": "up"},
    "legato_last2": {"stages": ["up_blocks.2", "up_blocks.3"]},
    "legato_ckpt": {"stages": "up", "checkpointing": True},
    "legato_adjoint": {"stages": "up", "adjoint": True},
    # the frozen UNet in bf16, what trains in fp32 (UnlearningModule's base_dtype): results key "methods_bf16_base"
    "legato_bf16_base": {"stages": "up", "base_dtype": "bf16"},
    "lora_bf16_base": {"base_dtype": "bf16"},
    "legato_sdxl": {"stages": "up", "unet": "sdxl"},  # results keys "sdxl_*"
}
SDXL_KEYS = ["unet_params", "seconds_per_step", "peak_rss_mb", "latent_size"]


def sdxl_options(a: argparse.Namespace) -> dict:
    """What ``--sdxl-bf16-base`` / ``--sdxl-checkpointing`` add to ``legato_sdxl`` (recorded in its row)."""
    return {**({"base_dtype": "bf16"} if a.sdxl_bf16_base else {}),
            **({"checkpointing": True} if a.sdxl_checkpointing else {})}


def worker(a: argparse.Namespace) -> dict:
    import torch
    from diffusers import UNet2DConditionModel

    from legato_pl.adapters import ODEAdapterConfig
    from legato_pl.methods import Legato, Residual, build_method

    torch.manual_seed(0)
    spec = VARIANTS[a.variant]
    unet_config = json.loads(a.unet_config) if a.unet_config else SD15_UNET
    if spec.get("unet") == "sdxl":
        spec = {**spec, **sdxl_options(a)}
        unet_config = json.loads(a.sdxl_config) if a.sdxl_config else {**SDXL_UNET, "sample_size": a.sdxl_latent}
    half = torch.bfloat16 if spec.get("base_dtype") == "bf16" else None
    torch.set_default_dtype(half or torch.float32)  # a bf16 base is built in bf16 (as from_pretrained(torch_dtype=))
    unet = UNet2DConditionModel(**unet_config).eval().requires_grad_(False)
    torch.set_default_dtype(torch.float32)  # what trains is built in fp32
    name = a.variant.split("_")[0]
    config = ODEAdapterConfig(**ADAPTER, stages=spec.get("stages", "up"), adjoint=spec.get("adjoint", False))
    if spec.get("checkpointing"):
        unet.enable_gradient_checkpointing()
    ode = {"legato": Legato, "residual": Residual}.get(name)
    method = build_method(functools.partial(ode, adapter=config) if ode else name, unet)
    params = method.trainable_parameters()
    for p in params:  # what trains stays fp32 on a half-precision base
        p.data = p.data.float()
    opt = torch.optim.AdamW(params, lr=1e-4)
    b = a.batch
    size, width = unet.config.sample_size, unet.config.cross_attention_dim
    dtype = half or torch.float32
    x = torch.randn(b, unet.config.in_channels, size, size).to(dtype)
    t = torch.randint(0, 1000, (b,))
    text = torch.randn(b, 77, width).to(dtype)
    added = None  # SDXL's pooled text embedding and size/crop ids ("text_time")
    if unet.config.addition_embed_type == "text_time":
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        added = {"text_embeds": torch.randn(b, pooled).to(dtype),
                 "time_ids": torch.tensor([[8.0 * size, 8.0 * size, 0, 0, 8.0 * size, 8.0 * size]] * b).to(dtype)}
    stamps = []
    for _ in range(a.warmup + a.steps):
        start = time.perf_counter()
        with torch.no_grad(), method.teacher() as teacher:
            target = teacher(x, t, encoder_hidden_states=text, added_cond_kwargs=added).sample
        unet.train(bool(spec.get("checkpointing")))  # diffusers checkpoints only in train mode (dropout is 0)
        loss = (unet(x, t, encoder_hidden_states=text, added_cond_kwargs=added).sample.float() - target.float()).square().mean()
        loss = loss + 0.1 * sum(s.diff(dim=0).square().mean() for s in method.trajectory_states().values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        unet.eval()
        stamps.append(time.perf_counter() - start)
    return {"seconds_per_step": sum(stamps[a.warmup:]) / a.steps, "step_seconds": stamps, "latent_size": size,
            "trainable_params": sum(p.numel() for p in params),
            "unet_params": sum(p.numel() for p in unet.parameters()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--memory-limit-gb", type=float, default=psutil.virtual_memory().total / 2**30,
                   help="address-space limit of each child (default: the machine's RAM): a variant that needs more "
                        "fails alone, not the machine")
    p.add_argument("--update", action="store_true",
                   help="keep the other variants' results of the existing results file (rerun only --variants)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--sdxl-latent", type=int, default=128,
                   help="latent size of legato_sdxl (SDXL's own: 128, 1024 px); smaller when 128 does not fit")
    p.add_argument("--sdxl-bf16-base", action="store_true", help="legato_sdxl's frozen UNet in bf16")
    p.add_argument("--sdxl-checkpointing", action="store_true",
                   help="legato_sdxl with gradient checkpointing of the frozen path")
    p.add_argument("--sdxl-config", help="JSON UNet2DConditionModel kwargs instead of SDXL's (for tests)")
    p.add_argument("--unet-config", help="JSON UNet2DConditionModel kwargs instead of SD 1.5's (for tests)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    if a.worker:
        a.variant = a.worker
        print(json.dumps(worker(a)))
        return {}
    results: dict[str, dict] = {}
    command = shlex.join(["python", "benchmarks/sd_scale_cost.py", *(argv if argv is not None else sys.argv[1:])])
    previous = Path(a.out) / "sd_scale_cost.json"
    if a.update and previous.is_file():  # the other variants keep the command and commit that made them
        before = json.loads(previous.read_text())
        earlier = {**before["methods"], **{f"{k}_bf16_base": r for k, r in before.get("methods_bf16_base", {}).items()},
                   **({"legato_sdxl": before["sdxl"]} if before.get("sdxl") else {})}
        results = {k: {"command": before["command"], "commit": before.get("commit"), **r} for k, r in earlier.items()}
    unet_config = json.loads(a.unet_config) if a.unet_config else SD15_UNET
    limit = int(a.memory_limit_gb * 2**30)
    for variant in a.variants:
        cmd = [sys.executable, __file__, "--worker", variant, "--batch", str(a.batch), "--steps", str(a.steps),
               "--warmup", str(a.warmup), "--sdxl-latent", str(a.sdxl_latent),
               *(["--sdxl-bf16-base"] if a.sdxl_bf16_base else []),
               *(["--sdxl-checkpointing"] if a.sdxl_checkpointing else []),
               *(["--unet-config", a.unet_config] if a.unet_config else []),
               *(["--sdxl-config", a.sdxl_config] if a.sdxl_config else [])]
        print("+", " ".join(cmd), flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
        made = {"command": command, "commit": git_commit(), **(sdxl_options(a) if variant == "legato_sdxl" else {})}
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            results[variant] = {**made, "error": f"exit {proc.returncode}: {tail[:300]}",
                                **({"latent_size": a.sdxl_latent} if variant == "legato_sdxl" else {})}
        else:
            results[variant] = {**made, **json.loads(proc.stdout.strip().splitlines()[-1])}
        print(variant, results[variant], flush=True)
    sdxl = results.get("legato_sdxl")  # another UNet: no ratio to SD 1.5's full fine-tune
    sd15 = {k: r for k, r in results.items() if k != "legato_sdxl"}
    full = sd15.get("full", {})
    for r in sd15.values():
        if "error" not in r and "error" not in full and full:
            r["ratio_time_vs_full"] = r["seconds_per_step"] / full["seconds_per_step"]
            r["ratio_mem_vs_full"] = r["peak_rss_mb"] / full["peak_rss_mb"]
    unet_params = next((r["unet_params"] for r in sd15.values() if "unet_params" in r), None)
    out = {"command": command, "commit": git_commit(),
           "unet_params": unet_params, "batch": a.batch, "latent_size": unet_config["sample_size"], "steps_timed": a.steps,
           "adapter": ADAPTER, "methods": {k: r for k, r in sd15.items() if not k.endswith("_bf16_base")},
           "methods_bf16_base": {k.removesuffix("_bf16_base"): r for k, r in sd15.items() if k.endswith("_bf16_base")},
           "sdxl": sdxl, **{f"sdxl_{k}": (sdxl or {}).get(k) for k in SDXL_KEYS}}
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sd_scale_cost.json").write_text(json.dumps(out, indent=1) + "\n")
    keys = ["trainable_params", "seconds_per_step", "ratio_time_vs_full", "peak_rss_mb", "ratio_mem_vs_full"]
    fmt = lambda v: "" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:.3f}")  # noqa: E731
    md = [f"# One unlearning step on an SD-1.5-sized UNet ({unet_params or 0:,} parameters, CPU)", "",
          f"Command: `{out['command']}`", "", "| variant | " + " | ".join(keys) + " |", "| --- " * (len(keys) + 1) + "|"]
    md += [f"| {k} | " + (" | ".join(fmt(r.get(x)) for x in keys) if "error" not in r else r["error"]) + " |"
           for k, r in sd15.items()]
    if sdxl is not None and "error" in sdxl:
        md += ["", f"legato on an SDXL-sized UNet ({fmt(sdxl.get('latent_size'))}x{fmt(sdxl.get('latent_size'))} "
               f"latents, batch {a.batch}{sdxl_how(sdxl)}) did not run: {sdxl['error']}"]
    elif sdxl is not None:
        md += ["", f"legato on an SDXL-sized UNet ({fmt(sdxl.get('unet_params'))} parameters, "
               f"{fmt(sdxl.get('latent_size'))}x{fmt(sdxl.get('latent_size'))} latents, batch {a.batch}{sdxl_how(sdxl)}): "
               f"{fmt(sdxl['seconds_per_step'])} s per step, peak RSS {fmt(sdxl['peak_rss_mb'])} MB, "
               f"{fmt(sdxl['trainable_params'])} trainable parameters"]
    (out_dir / "sd_scale_cost.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return out


def sdxl_how(row: dict) -> str:
    """The SDXL row's memory savers, as words."""
    how = [w for k, w in (("base_dtype", "frozen UNet in bf16"), ("checkpointing", "gradient checkpointing")) if row.get(k)]
    return "".join(f", {w}" for w in how)


if __name__ == "__main__":
    main()
