"""Validated configuration of the ODE adapters (peft-style ``@dataclass``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torchdiffeq._impl.odeint import SOLVERS

STAGE_PRESETS = ("up", "down", "mid", "all")
FIXED_GRID_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams")


@dataclass
class ODEAdapterConfig:
    """How ODE adapters are built and integrated. Defaults follow the LEGATO paper."""

    stages: str | list[str] = field(
        default="up",
        metadata={"help": "'up' (after every up block), 'down', 'mid', 'all', or a list of module names."},
    )
    hidden: int = field(default=256, metadata={"help": "Hidden width of the vector field f."})
    t_end: float = field(default=1.6, metadata={"help": "Integration end time at strength 1."})
    step_size: float = field(
        default=0.4, metadata={"help": "Step of fixed-grid solvers; also the grid on which states are recorded."}
    )
    method: str = field(default="euler", metadata={"help": "Any torchdiffeq method name."})
    adjoint: bool = field(default=False, metadata={"help": "Backpropagate with the adjoint method (O(1) memory)."})
    rtol: float = field(default=1e-5, metadata={"help": "Relative tolerance of adaptive solvers."})
    atol: float = field(default=1e-5, metadata={"help": "Absolute tolerance of adaptive solvers."})
    negative_slope: float = field(default=0.2, metadata={"help": "LeakyReLU slope inside f."})
    timestep_conditioning: bool = field(
        default=False, metadata={"help": "Condition f on the diffusion timestep (a learned per-channel bias)."}
    )

    def __post_init__(self) -> None:
        if isinstance(self.stages, str):
            if self.stages not in STAGE_PRESETS:
                raise ValueError(f"stages must be one of {STAGE_PRESETS} or a list of module names, got {self.stages!r}")
        else:
            self.stages = list(self.stages)
            if not self.stages or not all(isinstance(s, str) and s for s in self.stages):
                raise ValueError(f"stages must be a non-empty list of module names, got {self.stages!r}")
        if self.method not in SOLVERS:
            raise ValueError(f"unknown ODE method {self.method!r}; valid methods: {', '.join(sorted(SOLVERS))}")
        if self.method == "scipy_solver":
            raise ValueError("method 'scipy_solver' cannot backpropagate; choose a torch solver")
        for name in ("hidden",):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("t_end", "step_size", "rtol", "atol"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.step_size > self.t_end:
            raise ValueError(f"step_size ({self.step_size}) must not exceed t_end ({self.t_end})")

    @property
    def num_steps(self) -> int:
        """Number of solver steps (grid intervals) at strength 1."""
        return max(1, round(self.t_end / self.step_size))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ODEAdapterConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown adapter config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)
