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

from torch import Tensor, nn

from legato_pl.adapters import ODEAdapterConfig, ODEAdapters, attach_adapters, save_adapters
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
        try:
            from peft import LoraConfig, inject_adapter_in_model
            from peft.tuners.tuners_utils import BaseTunerLayer
        except ImportError:  # pragma: no cover - depends on the environment
            raise LegatoInputError("method 'lora' needs peft: pip install 'legato_pl[baselines]'") from None
        self.rank = rank
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS), unet)
        self._lora_layers = [m for m in unet.modules() if isinstance(m, BaseTunerLayer)]
        if not self._lora_layers:
            raise LegatoInputError(f"LoRA found none of {LORA_TARGETS} in {type(unet).__name__}")
        for layer in self._lora_layers:  # trainable: the LoRA factors, by structure
            for name, p in layer.named_parameters():
                p.requires_grad_(name.startswith(("lora_A", "lora_B")))

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
