"""Validated configuration of the ODE adapters (peft-style ``@dataclass``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

STAGE_PRESETS = ("up", "down", "mid", "all")
CONDITIONS = ("none", "timestep", "embedding")
# torchdiffeq's public odeint rejects unknown names with the list below; mirrored here to fail at config time
SOLVERS = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun", "euler", "midpoint", "heun2", "heun3", "rk4",
           "explicit_adams", "implicit_adams", "fixed_adams", "scipy_solver")


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
    condition: str = field(
        default="none",
        metadata={"help": "What f sees besides h, as a learned bias on its hidden layer: 'none' (the paper), "
                          "'timestep' (the diffusion timestep), or 'embedding' (the stage's own time + class "
                          "embedding input, so f can tell whose face is being drawn)."},
    )
    kernel_size: int = field(default=1, metadata={"help": "Kernel of f's convolutions: 1 (paper, EG3D) or 3 (MNIST)."})

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
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if self.kernel_size <= 0 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {self.kernel_size}")
        if int(self.hidden) <= 0:
            raise ValueError(f"hidden must be positive, got {self.hidden}")
        for name in ("t_end", "step_size", "rtol", "atol"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.step_size > self.t_end:
            raise ValueError(f"step_size ({self.step_size}) must not exceed t_end ({self.t_end})")

    @classmethod
    def paper(cls, **overrides: Any) -> ODEAdapterConfig:
        """The LEGATO paper's adapter: 1x1 field of width 256 seeing only h, Euler 0 -> 1.6 step 0.4."""
        return cls(**{"hidden": 256, "condition": "none", "kernel_size": 1, "t_end": 1.6, "step_size": 0.4,
                      "method": "euler", **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ODEAdapterConfig:
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown adapter config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)
