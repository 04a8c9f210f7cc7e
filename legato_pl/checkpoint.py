"""Safe checkpoint loading: tensors and plain data only, never pickled code."""

from __future__ import annotations

import pickle
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH

from legato_pl.errors import LegatoInputError


class SafeCheckpointIO(TorchCheckpointIO):
    """Loads every checkpoint with ``torch.load(weights_only=True)``; saving stays Lightning's atomic save."""

    def load_checkpoint(self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            first = str(err).strip().splitlines()[0][:200]
            raise LegatoInputError(
                f"refusing to load {path}: it holds pickled objects that could run code ({first}); "
                "legato_pl checkpoints contain tensors and plain data only"
            ) from None
