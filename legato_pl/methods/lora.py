"""LoRA baseline (peft) on the UNet's attention and ResNet convs; strength is peft's LoRA scale.

The weights are saved in diffusers' own LoRA file (``pytorch_lora_weights.safetensors``, ``unet.``
prefix, the peft config as metadata), so a plain diffusers pipeline loads them:
``pipe.load_lora_weights(artifact_dir)``, or on a UNet2DConditionModel
``unet.load_lora_adapter(artifact_dir, prefix="unet", weight_name=LORA_FILE)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from legato_pl.errors import LegatoInputError
from legato_pl.methods.base import UnlearningMethod

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]
LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' name (what save_lora_weights writes)


class LoRA(UnlearningMethod):
    """peft LoRA factors of rank ``rank`` on ``targets`` inside the UNet; the teacher is the UNet with them off."""

    name = "lora"

    def __init__(self, unet: nn.Module, rank: int = 4, targets: list[str] | None = None):
        super().__init__(unet)
        self.rank, self.targets = int(rank), list(targets or LORA_TARGETS)
        try:
            from peft import LoraConfig, inject_adapter_in_model
            from peft.tuners.lora import LoraLayer
        except ImportError:  # pragma: no cover - depends on the environment
            raise LegatoInputError("method 'lora' needs peft: pip install 'legato_pl[baselines]'") from None
        inject_adapter_in_model(LoraConfig(r=self.rank, lora_alpha=self.rank, target_modules=self.targets), unet)
        self._layers = [m for m in unet.modules() if isinstance(m, LoraLayer)]
        if not self._layers:
            raise LegatoInputError(f"LoRA found none of {self.targets} in {type(unet).__name__}")
        for p in self.trainable_parameters():
            p.requires_grad_(True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The factors of this method's LoRA (peft's adapter ``default``), by structure."""
        return [p for layer in self._layers for name, p in layer.named_parameters()
                if name.startswith(("lora_A.default.", "lora_B.default."))]

    def options(self) -> dict[str, Any]:
        return {"rank": self.rank, "targets": self.targets}

    @contextmanager
    def teacher(self) -> Iterator[nn.Module]:
        for layer in self._layers:
            layer.enable_adapters(False)
        try:
            yield self._unet
        finally:
            for layer in self._layers:
                layer.enable_adapters(True)

    def set_strength(self, value: float) -> None:
        for layer in self._layers:  # scaling = value * alpha / r; 0 adds exactly nothing
            for adapter in layer.active_adapters:
                layer.set_scale(adapter, value)

    mergeable = True

    def merge(self) -> nn.Module:
        """W <- W + strength * B A in every LoRA layer (exact up to float rounding); the peft layers go."""
        layers = {id(layer) for layer in self._layers}
        for name, module in list(self._unet.named_modules()):
            if id(module) in layers:
                module.merge(adapter_names=["default"])
                parent, _, child = name.rpartition(".")
                setattr(self._unet.get_submodule(parent) if parent else self._unet, child, module.get_base_layer())
        self._layers = []
        return self._unet

    def save_weights(self, path: Path) -> None:
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(self._unet).items()}
        metadata = {"r": self.rank, "lora_alpha": self.rank, "target_modules": self.targets}
        StableDiffusionPipeline.save_lora_weights(str(path), unet_lora_layers=convert_state_dict_to_diffusers(state),
                                                  weight_name=LORA_FILE, unet_lora_adapter_metadata=metadata)

    def load_weights(self, path: Path) -> None:
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_unet_state_dict_to_peft
        from peft.utils import set_peft_model_state_dict

        state = StableDiffusionPipeline.lora_state_dict(str(path), weight_name=LORA_FILE)[0]
        state = convert_unet_state_dict_to_peft({k.removeprefix("unet."): v for k, v in state.items()})
        result = set_peft_model_state_dict(self._unet, state)
        if getattr(result, "unexpected_keys", None):
            raise LegatoInputError(f"{path}: LoRA weights for modules this UNet does not have: {result.unexpected_keys[:3]}")
