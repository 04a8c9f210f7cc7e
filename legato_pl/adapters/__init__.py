"""Neural-ODE adapters for frozen diffusers UNets."""

from legato_pl.adapters.config import ODEAdapterConfig
from legato_pl.adapters.io import load_adapters, read_adapter_config, save_adapters
from legato_pl.adapters.layer import ODEAdapter, VectorField
from legato_pl.adapters.model import ODEAdapters, attach_adapters, resolve_stages

__all__ = [
    "ODEAdapterConfig",
    "ODEAdapter",
    "ODEAdapters",
    "VectorField",
    "attach_adapters",
    "load_adapters",
    "read_adapter_config",
    "resolve_stages",
    "save_adapters",
]
