"""The diffusion training loss and its parts (forward noising, the target by prediction type), and the EMA:
shared by the pretraining modules and the audit's attacks."""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import Tensor, nn

from legato_pl.errors import LegatoInputError


def add_noise(
    scheduler: DDPMScheduler, x0: Tensor, generator: torch.Generator | None = None, rank: int = 0, world: int = 1
) -> tuple[Tensor, Tensor, Tensor]:
    """``(x_t, noise, t)`` with ``t`` uniform over the scheduler's training timesteps.

    ``x0`` holds rows ``rank::world`` of a global batch; the draws are made for the whole global batch
    and sliced the same way, so W processes add exactly the noise one process would.
    """
    n = x0.shape[0] * world
    noise = torch.randn((n, *x0.shape[1:]), generator=generator, device=x0.device, dtype=x0.dtype)[rank::world]
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), device=x0.device, generator=generator)
    t = t[rank::world]
    return scheduler.add_noise(x0, noise, t), noise, t


def diffusion_target(scheduler: DDPMScheduler, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """What the UNet predicts under the scheduler's ``prediction_type``: ``epsilon`` (the noise),
    ``v_prediction`` (the velocity) or ``sample`` (the clean input)."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    raise LegatoInputError(f"unsupported prediction_type {kind!r}; supported: epsilon, v_prediction, sample")


def random_rows(n: int, batch_size: int, generator: torch.Generator) -> Tensor:
    """``min(batch_size, n)`` row indices of ``n`` drawn with replacement (a batch from a few photos)."""
    return torch.randint(0, n, (min(batch_size, n),), generator=generator, device=generator.device)


def denoising_loss(
    scheduler: DDPMScheduler,
    x0: Tensor,
    predict: Callable[[Tensor, Tensor], Tensor],
    generator: torch.Generator | None = None,
    rank: int = 0,
    world: int = 1,
    target: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Tensor:
    """The diffusion loss of ``predict(x_t, t)`` on ``x0`` noised at random timesteps (:func:`add_noise`): the
    mean squared error, in fp32, to :func:`diffusion_target`, or to ``target(x_t, t)`` when given (e.g. another
    model's prediction)."""
    x_t, noise, t = add_noise(scheduler, x0, generator, rank, world)
    wanted = diffusion_target(scheduler, x0, noise, t) if target is None else target(x_t, t)
    return F.mse_loss(predict(x_t, t).float(), wanted.float())


def micro_step(module: pl.LightningModule, batch_idx: int) -> int:
    """The randomness index of a training micro-batch: the global step, or with ``accumulate_grad_batches`` N
    ``global_step * N`` + the micro-batch's place in the step, so accumulated micro-batches draw their own noise."""
    accumulate = module.trainer.accumulate_grad_batches if module._trainer is not None else 1
    return module.global_step * accumulate + batch_idx % accumulate


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """Randomness of one optimisation step: identical whether or not the fit was resumed or split."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)


class BatchedForward:
    """The inputs of one batched UNet forward gathered under names; the predictions come back under them.

    Objective terms add what they need (``forward["forget"] = (x_t, t, condition)``) and read their prediction
    by the same name, so no term tracks where its rows sit in the concatenated batch.
    """

    def __init__(self) -> None:
        self.parts: dict[str, tuple[Tensor, Tensor, Tensor]] = {}

    def __setitem__(self, name: str, part: tuple[Tensor, Tensor, Tensor]) -> None:
        if name in self.parts:
            raise KeyError(f"{name!r} is already in this forward")
        self.parts[name] = part

    def __call__(self, predict: Callable[[Tensor, Tensor, Tensor], Tensor]) -> dict[str, Tensor]:
        """``predict(x, t, cond)`` once on every part, concatenated in the order they were added; fp32 out."""
        xs, ts, conds = zip(*self.parts.values())
        out = predict(torch.cat(xs), torch.cat(ts), torch.cat(conds)).float().split([len(x) for x in xs])
        return dict(zip(self.parts, out))
