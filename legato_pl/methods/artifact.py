"""The artifact on disk: ``legato_method.json`` names the method, its options and the base it was trained on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from legato_pl.adapters.io import is_adapter_dir
from legato_pl.errors import LegatoInputError

METHOD_FILE = "legato_method.json"
FORMAT = "legato_pl.method"
FORMAT_VERSION = 2


def read_method_file(path: str | Path) -> dict[str, Any]:
    """The artifact's ``legato_method.json`` (``{"method": "legato"}`` for bare ODE adapters)."""
    path = Path(path)
    if not path.is_dir():
        raise LegatoInputError(f"artifact directory {path} does not exist" if not path.exists() else
                               f"artifact {path} is a file, not a directory")
    if (path / METHOD_FILE).is_file():
        return json.loads((path / METHOD_FILE).read_text())
    if is_adapter_dir(path):  # ODE adapters written by save_adapters alone
        return {"method": "legato", "options": {}}
    raise LegatoInputError(f"{path} is not a legato_pl artifact (no {METHOD_FILE} and no ODE adapters)")
