"""Adapter-only artifacts: ``ode_adapters.json`` + ``adapters.safetensors``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from legato_pl.adapters.config import ODEAdapterConfig
from legato_pl.adapters.model import ODEAdapters, embedding_width, follow_unet, resolve_stages
from legato_pl.errors import LegatoInputError

CONFIG_NAME = "ode_adapters.json"
WEIGHTS_NAME = "adapters.safetensors"
FORMAT_VERSION = 1


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_adapters(adapters: ODEAdapters, path: str | os.PathLike) -> Path:
    """Write the adapters' weights and config into directory ``path`` (atomically, file by file)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in adapters.state_dict().items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "unet_class": type(adapters.unet).__name__,
        "stage_channels": adapters.stage_channels,
        "condition_dim": adapters.condition_dim,
        "config": adapters.config.to_dict(),
    }
    _atomic_write_bytes(path / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    _atomic_write_bytes(path / CONFIG_NAME, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return path


def _config_file(path: Path) -> Path | None:
    config = path / CONFIG_NAME
    return config if config.is_file() and (path / WEIGHTS_NAME).is_file() else None


def is_adapter_dir(path: str | os.PathLike) -> bool:
    """``path`` holds ODE adapters written by :func:`save_adapters`."""
    return _config_file(Path(path)) is not None


def read_adapter_config(path: str | os.PathLike) -> dict:
    config = _config_file(Path(path))
    if config is None:
        raise LegatoInputError(f"{path} is not an adapter directory (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    return json.loads(config.read_text())


def load_adapters(unet: nn.Module, path: str | os.PathLike, strength: float = 1.0) -> ODEAdapters:
    """Attach adapters saved with :func:`save_adapters` to ``unet`` (e.g. ``pipe.unet``)."""
    meta = read_adapter_config(path)
    config = ODEAdapterConfig.from_dict(meta["config"])
    saved: dict[str, int] = meta["stage_channels"]
    try:
        available = resolve_stages(unet, list(saved))
    except LegatoInputError as err:
        raise LegatoInputError(f"adapters in {path} do not fit this UNet: {err}") from None
    for stage, channels in saved.items():
        if available[stage] != channels:
            raise LegatoInputError(
                f"adapters in {path} do not fit this UNet: stage {stage!r} has {available[stage]} channels, "
                f"the adapter expects {channels}"
            )
    if config.condition == "embedding" and embedding_width(unet) != meta.get("condition_dim"):
        raise LegatoInputError(
            f"adapters in {path} do not fit this UNet: its time embedding has {embedding_width(unet)} channels, "
            f"the adapters' condition expects {meta.get('condition_dim')}"
        )
    unet.requires_grad_(False)
    adapters = ODEAdapters(unet, config, saved)
    state = load_file(str(Path(path) / WEIGHTS_NAME))
    adapters.load_state_dict(state, strict=True)
    follow_unet(adapters, unet)
    adapters.strength = strength
    return adapters


__all__ = ["save_adapters", "load_adapters", "read_adapter_config", "is_adapter_dir", "CONFIG_NAME", "WEIGHTS_NAME"]
