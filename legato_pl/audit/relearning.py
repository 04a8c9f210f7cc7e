"""Relearning: how many fine-tuning steps bring the forgotten person back?

The attacker holds the unlearned model and fine-tunes it with the plain diffusion loss, either on k
photos of the forget person or on photos of *other* people only (the "Unstable Unlearning" attack:
unrelated fine-tuning that revives an erased concept). What trains is the method's own parameters
(``params="method"``: the adapters, LoRA factors or weights the artifact holds) or a fresh LoRA on
the UNet (``params="lora"``). Every ``eval_every`` steps the forget person is sampled from fixed seeds
and judged; the result is the first step whose accuracy reaches ``target``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn

from legato_pl.audit.inversion import class_conditioning
from legato_pl.audit.judge import IdentityJudge
from legato_pl.conditioning import Conditioning
from legato_pl.methods import UnlearningMethod
from legato_pl.models.diffusion import denoising_loss, random_rows, step_generator
from legato_pl.sampling import sample

RELEARN_LORA = "relearn"


@dataclass
class RelearnResult:
    steps_to_target: int | None  # None: not reached within the budget
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, forget accuracy)


def _trainable(unet: nn.Module, method: UnlearningMethod, params: Literal["method", "lora"], rank: int,
               seed: int = 0) -> list[nn.Parameter]:
    """The parameters relearning trains; a fresh LoRA is initialised from ``seed``, not the process's RNG state."""
    if params == "method":
        chosen = method.trainable_parameters()
    else:
        from peft import LoraConfig, inject_adapter_in_model
        from peft.tuners.lora import LoraLayer

        from legato_pl.methods.lora import LORA_TARGETS

        # peft makes the injected adapter the only active one: a LoRA the method holds must stay on
        held = {id(m): list(m.active_adapters) for m in unet.modules() if isinstance(m, LoraLayer)}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS), unet,
                                    adapter_name=RELEARN_LORA)
        for layer in (m for m in unet.modules() if isinstance(m, LoraLayer)):
            layer.set_adapter(sorted({*held.get(id(layer), []), RELEARN_LORA}))
        chosen = [p for n, p in unet.named_parameters() if f".{RELEARN_LORA}." in n or n.endswith(f".{RELEARN_LORA}")]
    unet.requires_grad_(False)
    method.requires_grad_(False)
    for p in chosen:
        p.requires_grad_(True)
    return chosen


def relearn(
    unet: nn.Module,
    scheduler: DDPMScheduler,
    method: UnlearningMethod,
    photos: Tensor,
    labels: Tensor,
    judge: IdentityJudge,
    forget_label: int,
    *,
    target: float,
    conditioning: Conditioning | None = None,
    params: Literal["method", "lora"] = "method",
    max_steps: int = 200,
    eval_every: int = 25,
    lr: float = 1e-4,
    batch_size: int = 8,
    eval_samples: int = 16,
    lora_rank: int = 4,
    seed: int = 0,
    sampling: dict | None = None,
) -> RelearnResult:
    """Fine-tune (``photos`` of identities ``labels``) until the forget person's accuracy reaches ``target``.

    ``conditioning`` turns identities into conditions (default: the UNet's class table) for training and
    sampling alike. Mutates ``unet`` and ``method``: pass a freshly loaded copy. Step 0 is the model as given.
    """
    conditioning = conditioning or class_conditioning(unet)
    sampling = {"guidance_scale": 3.0, "num_inference_steps": 25, **(sampling or {})}
    device = next(unet.parameters()).device
    trainable = _trainable(unet, method, params, lora_rank, seed)
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    eval_labels = torch.full((eval_samples,), forget_label)
    result = RelearnResult(None)
    photos = conditioning.to_latents(photos.to(device))
    for step in range(max_steps + 1):
        if step % eval_every == 0 or step == max_steps:
            unet.eval()
            images = sample(unet, scheduler, eval_labels, conditioning=conditioning, seed=seed, **sampling)
            acc = judge.accuracy(images, forget_label)
            result.curve.append((step, acc))
            if acc >= target:
                result.steps_to_target = step
                break
        if step == max_steps:
            break
        gen = step_generator(seed, step, device)
        idx = random_rows(len(photos), batch_size, gen)
        cond = conditioning.encode(unet, labels[idx.cpu()], generator=torch.Generator().manual_seed(seed + step)).to(device)
        loss = denoising_loss(scheduler, photos[idx], partial(conditioning.predict, unet, cond=cond), gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return result
