"""LEGATO: Neural-ODE adapters on the frozen UNet; the teacher is the same UNet with the adapters off."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from legato_pl.adapters import ODEAdapterConfig, ODEAdapters, attach_adapters, load_adapters, save_adapters
from legato_pl.errors import LegatoInputError
from legato_pl.methods.base import UnlearningMethod


class Legato(UnlearningMethod):
    """ODE adapters after the configured UNet stages (``adapter``: an :class:`ODEAdapterConfig`).
    Strength is the integration length; requests stack (earlier adapters frozen at strength 1)."""

    name = "legato"
    stackable = True

    def __init__(self, unet: nn.Module, adapter: ODEAdapterConfig | dict | None = None):
        """``adapter``: the :class:`ODEAdapterConfig` (or its dict); default the paper's."""
        super().__init__(unet)
        config = ODEAdapterConfig.from_dict(adapter) if isinstance(adapter, dict) else adapter or ODEAdapterConfig()
        self.adapters: ODEAdapters = attach_adapters(unet, self.solver_config(config))

    @staticmethod
    def solver_config(config: ODEAdapterConfig) -> ODEAdapterConfig:
        """The adapter config this method integrates with (the ODE as configured)."""
        return config

    def options(self) -> dict[str, Any]:
        return {"adapter": self.adapters.config.to_dict()}

    @contextmanager
    def teacher(self) -> Iterator[nn.Module]:
        with self.adapters.disabled():
            yield self._unet

    def trajectory_states(self) -> dict[str, Tensor]:
        return self.adapters.trajectory_states()

    def stop_recording_states(self) -> None:
        self.adapters.record_states = False

    def set_strength(self, value: float) -> None:
        self.adapters.strength = value

    def strength_grid(self) -> list[float]:
        return self.adapters.strength_grid()

    def merge(self) -> nn.Module:
        raise LegatoInputError(
            "ODE adapters cannot be merged: the flow h -> h(t_end) of a nonlinear field is not a weight change "
            "of any UNet layer. Serve the model behind an API, or use a mergeable method (lora, full)")

    def save_weights(self, path: Path) -> None:
        save_adapters(self.adapters, path)

    def load_weights(self, path: Path) -> None:
        self.adapters.remove()  # replace the freshly attached adapters by the saved ones (stages checked by name)
        self.adapters = load_adapters(self._unet, path)


class Residual(Legato):
    """The same adapter applied as one residual step ``h + t_end * f(h)`` (no ODE): the ablation of the solver."""

    name = "residual"

    @staticmethod
    def solver_config(config: ODEAdapterConfig) -> ODEAdapterConfig:
        return dataclasses.replace(config, method="euler", step_size=config.t_end)
