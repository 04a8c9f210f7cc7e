"""A complete unlearning method in one file (the README's example): train only the UNet's output bias."""

from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from legato_pl.methods import UnlearningMethod


class BiasOnly(UnlearningMethod):
    name = "bias_only"  # registered: method="bias_only", or by class_path like any class

    def __init__(self, unet: nn.Module):
        super().__init__(unet)
        self.delta = nn.Parameter(torch.zeros_like(unet.conv_out.bias))  # the only trainable tensor
        self._active = True  # False while the same UNet acts as the frozen teacher
        self._hook = unet.conv_out.register_forward_hook(self._add)

    def _add(self, module, args, output):
        return output + self.strength_scale * self.delta[:, None, None]

    @property
    def strength_scale(self) -> float:
        return self.strength if self._active else 0.0

    @contextmanager
    def teacher(self):
        self._active = False
        try:
            yield self._unet
        finally:
            self._active = True

    def set_strength(self, value: float) -> None:
        pass  # read by the hook at every forward

    def save_weights(self, path: Path) -> None:
        save_file({"delta": self.delta.detach().contiguous()}, str(path / "bias.safetensors"))

    def load_weights(self, path: Path) -> None:
        self.delta.data.copy_(load_file(str(path / "bias.safetensors"))["delta"])
