"""legato_pl: make a diffusion model forget an identity with Neural-ODE adapters (LEGATO) on Lightning."""

from legato_pl.adapters import ODEAdapterConfig, ODEAdapters, attach_adapters, load_adapters, save_adapters
from legato_pl.errors import LegatoInputError

__version__ = "0.1.0"
__all__ = [
    "LegatoInputError",
    "ODEAdapterConfig",
    "ODEAdapters",
    "attach_adapters",
    "load_adapters",
    "save_adapters",
]
