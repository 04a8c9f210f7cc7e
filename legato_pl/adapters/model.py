"""Attach ODE adapters to the stages of a diffusers UNet with forward hooks (the UNet is never copied)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from legato_pl.adapters.config import ODEAdapterConfig
from legato_pl.adapters.layer import ODEAdapter, time_grid
from legato_pl.errors import LegatoInputError
from legato_pl.strength import StrengthKnob


def _block_channels(unet: nn.Module) -> dict[str, int]:
    """Output channels of every resolution stage of a diffusers UNet2DModel / UNet2DConditionModel."""
    config = getattr(unet, "config", None)
    blocks = getattr(config, "block_out_channels", None) if config is not None else None
    if blocks is None or not hasattr(unet, "up_blocks"):
        raise LegatoInputError(f"{type(unet).__name__} is not a diffusers UNet with down/mid/up blocks")
    blocks = list(blocks)
    stages = {f"down_blocks.{i}": c for i, c in enumerate(blocks)}
    if getattr(unet, "mid_block", None) is not None:
        stages["mid_block"] = blocks[-1]
    stages.update({f"up_blocks.{i}": c for i, c in enumerate(reversed(blocks))})
    return stages


def resolve_stages(unet: nn.Module, stages: str | list[str]) -> dict[str, int]:
    """Map the configured stages to ``{module name: output channels}``; unknown names raise."""
    known = _block_channels(unet)
    if isinstance(stages, str):
        prefix = {"up": ("up_blocks",), "down": ("down_blocks",), "mid": ("mid_block",), "all": ("down", "mid", "up")}
        return {n: c for n, c in known.items() if n.startswith(prefix[stages])}
    modules = dict(unet.named_modules())
    resolved = {}
    for name in stages:
        if name not in modules:
            raise LegatoInputError(f"stage {name!r} is not a module of {type(unet).__name__}; stages: {sorted(known)}")
        if name in known:
            resolved[name] = known[name]
            continue
        convs = [m for m in modules[name].modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise LegatoInputError(f"stage {name!r} has no Conv2d from which to infer its output channels")
        resolved[name] = convs[-1].out_channels
    return resolved


def prompt_width(unet: nn.Module) -> int:
    """Width of the text states a cross-attention UNet is called with (0 for other UNets)."""
    width = getattr(getattr(unet, "config", None), "cross_attention_dim", None)
    return width if isinstance(width, int) else 0


def embedding_width(unet: nn.Module) -> int:
    """Width of what the ``embedding`` condition feeds the field: the time (+ class) embedding a diffusers
    UNet hands its blocks as ``temb``, plus, for a text UNet, the mean of the prompt's encoder states."""
    linear = getattr(getattr(unet, "time_embedding", None), "linear_2", None)
    if not isinstance(linear, nn.Linear):
        raise LegatoInputError(f"{type(unet).__name__} has no time_embedding.linear_2: cannot condition on its embedding")
    return linear.out_features + prompt_width(unet)


def _temb_reader(module: nn.Module, stage: str):
    """A function of a stage's forward ``(args, kwargs)`` returning its ``temb`` argument."""
    params = inspect.signature(module.forward).parameters
    if "temb" not in params:
        raise LegatoInputError(f"stage {stage!r} ({type(module).__name__}) takes no temb: "
                               "use condition 'none' or 'timestep', or a block-level stage")
    position = list(params).index("temb")

    def read(args: tuple, kwargs: dict) -> Tensor | None:
        return kwargs["temb"] if "temb" in kwargs else (args[position] if len(args) > position else None)

    return read


def _key(stage: str) -> str:
    return stage.replace(".", "__")  # ModuleDict keys may not contain dots


class ODEAdapters(StrengthKnob, nn.Module):
    """The ODE adapters of one UNet. Holds only adapter parameters; the UNet is referenced, not owned.
    ``strength`` is the fraction of ``t_end`` integrated (0: the base model exactly)."""

    def __init__(self, unet: nn.Module, config: ODEAdapterConfig, stage_channels: dict[str, int]):
        super().__init__()
        self.config = config
        self.stage_channels = dict(stage_channels)
        self.condition_dim = embedding_width(unet) if config.condition == "embedding" else 0
        self.adapters = nn.ModuleDict(
            {_key(n): ODEAdapter(c, config, self.condition_dim) for n, c in stage_channels.items()}
        )
        object.__setattr__(self, "_unet", unet)  # plain attribute: not a submodule, so never in our state
        self._strength = 1.0
        self._enabled = True
        self._states: dict[str, Tensor] = {}
        self._record_states = True
        self._handles: list[Any] = []
        self._timestep: Tensor | None = None
        self._prompt: Tensor | None = None
        self._attach()

    # hooks ---------------------------------------------------------------------------------------
    def _attach(self) -> None:
        for name in self.stage_channels:
            module = self._unet.get_submodule(name)
            read_temb = _temb_reader(module, name) if self.config.condition == "embedding" else None
            self._handles.append(module.register_forward_hook(self._make_hook(name, read_temb), with_kwargs=True))
        if self.config.condition == "timestep":
            self._handles.append(self._unet.register_forward_pre_hook(self._capture_timestep, with_kwargs=True))
        if self.config.condition == "embedding" and prompt_width(self._unet):
            self._handles.append(self._unet.register_forward_pre_hook(self._capture_prompt, with_kwargs=True))

    def _capture_timestep(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._timestep = kwargs["timestep"] if "timestep" in kwargs else args[1]

    def _capture_prompt(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        states = kwargs["encoder_hidden_states"] if "encoder_hidden_states" in kwargs else args[2]
        self._prompt = states.mean(dim=1)  # [B, width]: which prompt this row draws

    def _make_hook(self, name: str, read_temb):
        adapter = self.adapters[_key(name)]

        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            if not self._enabled or self._strength == 0.0:
                return None  # output untouched: exactly the base model
            h = output[0] if isinstance(output, tuple) else output
            temb = read_temb(args, kwargs) if read_temb is not None else None
            if temb is not None and self._prompt is not None:  # text UNets: what is drawn is in the prompt
                temb = torch.cat([temb, self._prompt.to(temb.dtype).expand(temb.shape[0], -1)], dim=1)
            condition = adapter.condition_from(self._timestep, temb, h.shape[0])
            dtype = adapter.field.inp.weight.dtype  # fp32 adapters on a half-precision base: in and out casts
            h_new, states = adapter(h.to(dtype), self._strength, condition, path=self._record_states)
            if states is not None:
                self._states[name] = states
            h_new = h_new.to(h.dtype)
            if h_new.stride() != h.stride():  # keep the memory layout, so downstream kernels are unchanged
                h_new = torch.empty_like(h).copy_(h_new)
            h = h_new
            return (h, *output[1:]) if isinstance(output, tuple) else h

        return hook

    # public API ----------------------------------------------------------------------------------
    @property
    def unet(self) -> nn.Module:
        return self._unet

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Run the same UNet without adapters (the frozen teacher)."""
        previous, self._enabled = self._enabled, False
        try:
            yield
        finally:
            self._enabled = previous

    def strength_grid(self) -> list[float]:
        """Strengths at the points of the solver's time grid (0, .25, .5, .75, 1 for the paper's solver;
        with ``t_end`` not a multiple of ``step_size`` the last, shorter step ends at 1)."""
        cfg = self.config
        return [round(t / cfg.t_end, 6) for t in time_grid(cfg.t_end, cfg.step_size)]

    def trajectory_states(self) -> dict[str, Tensor]:
        """States ``[steps + 1, B, C, H, W]`` visited by each adapter in the last adapted forward (none while
        :attr:`record_states` is off)."""
        return dict(self._states)

    @property
    def record_states(self) -> bool:
        """Keep each forward's path for :meth:`trajectory_states` (the trajectory term reads it). Off for a request
        frozen under later ones: each adapter's path (every state of the batch) would stay in memory until its next
        call, a stack's worth of them while the deployed model samples."""
        return self._record_states

    @record_states.setter
    def record_states(self, on: bool) -> None:
        self._record_states = bool(on)
        if not on:
            self._states = {}

    def remove(self) -> nn.Module:
        """Remove the hooks: the UNet behaves exactly as before attaching. Returns the UNet."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._states = {}
        return self._unet

    def extra_repr(self) -> str:
        return (f"stages={list(self.stage_channels)}, strength={self._strength}, method={self.config.method!r}, "
                f"condition={self.config.condition!r}")


def attach_adapters(unet: nn.Module, config: ODEAdapterConfig | None = None) -> ODEAdapters:
    """Attach zero-initialised ODE adapters after the configured stages of ``unet``.

    The UNet is frozen (``requires_grad_(False)``) and referenced, not copied; the returned module
    holds only adapter parameters. At init (and at strength 0) the UNet's outputs are exactly those
    of the base model.
    """
    config = config or ODEAdapterConfig()
    unet.requires_grad_(False)
    stage_channels = resolve_stages(unet, config.stages)
    if not stage_channels:
        raise LegatoInputError(f"stages={config.stages!r} matched no module of {type(unet).__name__}")
    return follow_unet(ODEAdapters(unet, config, stage_channels), unet)


def follow_unet(module: nn.Module, unet: nn.Module) -> nn.Module:
    """Put ``module`` on the UNet's device and floating dtype (fp16 / bf16 pipelines included)."""
    first = next(unet.parameters())
    return module.to(device=first.device, dtype=first.dtype)
