"""What an unlearning run trains, behind one interface, so every method shares data and objective.

- ``legato``: ODE adapters on the frozen UNet (the teacher is the same UNet, adapters disabled).
- ``residual``: the same adapter applied as one residual step ``h + t_end * f(h)`` (no ODE).
- ``lora``: peft LoRA on the UNet's attention and conv layers (teacher: LoRA disabled).
- ``full``: the whole UNet trains, GUIDE-style; only here a frozen teacher copy exists.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from legato_pl.adapters import ODEAdapterConfig, ODEAdapters, attach_adapters, load_adapters, save_adapters
from legato_pl.errors import LegatoInputError

METHODS = ("legato", "residual", "lora", "full")
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]


class UnlearningMethod(nn.Module):
    """Base: ``teacher()`` yields the network acting as the frozen teacher; ``save`` writes the artifact."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        object.__setattr__(self, "_unet", unet)  # the student UNet is the LightningModule's, not ours

    @property
    def ode_adapters(self) -> ODEAdapters | None:
        """The ODE adapters (strength knob) for ``legato`` / ``residual``; None otherwise."""
        return None

    @contextmanager
    def teacher(self) -> Iterator[nn.Module]:
        raise NotImplementedError

    def trajectory_states(self) -> dict[str, Tensor]:
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self._unet.parameters() if p.requires_grad] + [p for p in self.parameters() if p.requires_grad]

    def save(self, path: Path) -> Path:
        raise NotImplementedError


class ODEMethod(UnlearningMethod):
    def __init__(self, unet: nn.Module, config: ODEAdapterConfig):
        super().__init__(unet)
        self.adapters = attach_adapters(unet, config)

    @contextmanager
    def teacher(self) -> Iterator[nn.Module]:
        with self.adapters.disabled():
            yield self._unet

    def trajectory_states(self) -> dict[str, Tensor]:
        return self.adapters.trajectory_states()

    @property
    def ode_adapters(self) -> ODEAdapters | None:
        return self.adapters

    def save(self, path: Path) -> Path:
        return save_adapters(self.adapters, path)


class LoRAMethod(UnlearningMethod):
    def __init__(self, unet: nn.Module, rank: int):
        super().__init__(unet)
        self.rank = rank
        self._lora_layers = inject_lora(unet, rank)

    @contextmanager
    def teacher(self) -> Iterator[nn.Module]:
        for layer in self._lora_layers:
            layer.enable_adapters(False)
        try:
            yield self._unet
        finally:
            for layer in self._lora_layers:
                layer.enable_adapters(True)

    def save(self, path: Path) -> Path:
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(self._unet).items()}
        save_file(state, str(path / "lora.safetensors"))
        (path / "lora_config.json").write_text(json.dumps({"rank": self.rank, "target_modules": LORA_TARGETS}) + "\n")
        return path


def inject_lora(unet: nn.Module, rank: int) -> list[nn.Module]:
    """Add LoRA (peft) to the attention and conv layers; only the LoRA factors require grad."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - depends on the environment
        raise LegatoInputError("method 'lora' needs peft: pip install 'legato_pl[baselines]'") from None
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS), unet)
    layers = [m for m in unet.modules() if isinstance(m, BaseTunerLayer)]
    if not layers:
        raise LegatoInputError(f"LoRA found none of {LORA_TARGETS} in {type(unet).__name__}")
    for layer in layers:  # trainable: the LoRA factors, by structure
        for name, p in layer.named_parameters():
            p.requires_grad_(name.startswith(("lora_A", "lora_B")))
    return layers


class FullMethod(UnlearningMethod):
    def __init__(self, unet: nn.Module):
        super().__init__(unet)
        self.frozen_teacher = copy.deepcopy(unet).requires_grad_(False).eval()
        unet.requires_grad_(True)

    @contextmanager
    def teacher(self) -> Iterator[nn.Module]:
        yield self.frozen_teacher

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self._unet.parameters())

    def save(self, path: Path) -> Path:
        self._unet.save_pretrained(str(path / "unet"))
        return path


def build_method(name: str, unet: nn.Module, adapter: ODEAdapterConfig, lora_rank: int = 4) -> UnlearningMethod:
    if name == "legato":
        return ODEMethod(unet, adapter)
    if name == "residual":
        return ODEMethod(unet, dataclasses.replace(adapter, method="euler", step_size=adapter.t_end))
    if name == "lora":
        return LoRAMethod(unet, lora_rank)
    if name == "full":
        return FullMethod(unet)
    raise LegatoInputError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")


def load_method_weights(unet: nn.Module, method: str, path: str | Path, strength: float = 1.0) -> nn.Module:
    """``unet`` as trained by ``method``, from the artifact :meth:`UnlearningMethod.save` wrote.

    ``strength`` in [0, 1] is the knob of every method, 0 being the base model exactly: ODE adapters
    integrate to ``strength * t_end``; ``lora`` and ``full`` apply ``strength`` times their weight change
    (LoRA's ``B`` factors scaled; full weights ``base + strength * (trained - base)``).
    """
    path = Path(path)
    if not 0.0 <= strength <= 1.0:
        raise LegatoInputError(f"strength must be in [0, 1], got {strength}")
    if method in ("legato", "residual"):
        load_adapters(unet, path, strength=strength)
        return unet
    if method == "lora":
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        inject_lora(unet, json.loads((path / "lora_config.json").read_text())["rank"])
        set_peft_model_state_dict(unet, load_file(str(path / "lora.safetensors")))
        with torch.no_grad():
            for name, p in unet.named_parameters():
                if "lora_B" in name:
                    p.mul_(strength)
        return unet.requires_grad_(False)
    if method == "full":
        trained = type(unet).from_pretrained(str(path / "unet")).eval()
        if strength != 1.0:
            base = dict(unet.named_parameters())
            with torch.no_grad():
                for name, p in trained.named_parameters():
                    p.copy_(base[name] + strength * (p - base[name]))
        return trained.requires_grad_(False)
    raise LegatoInputError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
