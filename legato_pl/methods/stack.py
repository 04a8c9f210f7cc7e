"""A stack of removal requests is one artifact.

A request trained on top of earlier ones (``UnlearningModule(previous_adapters=[A, ...])``) deploys as base + A +
... + B. Its artifact carries *copies* of the earlier artifacts under ``stack/<i>/`` (flattened: A's own stack comes
first) and lists them, with a digest of each, in ``legato_method.json``::

    "stack": [{"dir": "stack/0", "digest": "<sha256>", "method": "legato", "forget": ["George_W_Bush"],
               "source": "runs/lfw/adapters"}]

Copies rather than references: the artifact is what a user ships and deploys, so it must hold the whole model
it stands for on any machine; a path to A breaks when the directory moves and silently changes when A is refit.
ODE adapters are small (a few hundred kB per request), so a copy costs little. ``load_method`` loads the parts
in order, frozen at strength 1, and refuses (:func:`verified_stack`), in one line, a part that is missing or whose
files changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from legato_pl.errors import LegatoInputError
from legato_pl.methods.artifact import METHOD_FILE, read_method_file
from legato_pl.methods.card import read_model_card

STACK_DIR = "stack"
PARTIAL = ".stack.partial"
UNHASHED = {"README.md"}  # the model card: audit adds its measurements to it


def artifact_digest(path: str | Path) -> str:
    """sha256 over one request's files (names and bytes): its stack, the stack's entries in
    ``legato_method.json`` and the model card (audit adds to it) left out."""
    path, digest = Path(path), hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        relative = file.relative_to(path)
        if relative.parts[0] in (STACK_DIR, PARTIAL) or relative.name in UNHASHED:
            continue
        data = file.read_bytes()
        if relative.as_posix() == METHOD_FILE:
            data = json.dumps({k: v for k, v in json.loads(data).items() if k != "stack"}, sort_keys=True).encode()
        digest.update(relative.as_posix().encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def _forget_of(path: Path) -> list[str]:
    try:
        return list(read_model_card(path).get("forget") or [])
    except LegatoInputError:
        return []


def stack_parts(previous: Sequence[str | Path]) -> list[tuple[Path, dict[str, Any]]]:
    """The earlier artifacts ``previous`` flattened in deployment order (each one's own stack first), as
    ``(directory, entry)``; refuses, in one line, a part that is missing, changed or given twice."""
    parts: list[tuple[Path, dict[str, Any]]] = []
    for source in map(Path, previous):
        meta = read_method_file(source)
        parts += [(source / e["dir"], e) for e in verified_stack(source, meta)]
        parts.append((source, {"method": meta.get("method"), "forget": _forget_of(source), "source": str(source),
                               "digest": artifact_digest(source)}))
    seen: dict[str, str] = {}
    for _, entry in parts:
        if entry["digest"] in seen:
            raise LegatoInputError(f"{entry['source']} is in the stack twice (also as {seen[entry['digest']]}): give "
                                   "each earlier request once (an artifact already holds its own stack)")
        seen[entry["digest"]] = entry["source"]
    return parts


def write_stack(previous: Sequence[str | Path], dest: str | Path) -> list[dict[str, Any]]:
    """Copy the earlier artifacts ``previous`` (:func:`stack_parts`) into ``dest/stack/<i>/``, each a single
    request, and return their entries for ``legato_method.json``."""
    dest = Path(dest)
    building = dest / PARTIAL  # the sources may be this artifact's own stack: it is replaced at the end
    shutil.rmtree(building, ignore_errors=True)
    entries = []
    for i, (source, entry) in enumerate(stack_parts(previous)):
        target = building / str(i)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(STACK_DIR, PARTIAL))
        if (target / METHOD_FILE).is_file():  # the part's own stack is flattened into this one
            meta = json.loads((target / METHOD_FILE).read_text())
            meta.pop("stack", None)
            (target / METHOD_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        entries.append({**entry, "dir": f"{STACK_DIR}/{i}"})
    shutil.rmtree(dest / STACK_DIR, ignore_errors=True)
    building.rename(dest / STACK_DIR)
    return entries


def verified_stack(path: Path, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The artifact's stack entries, each checked present and unchanged (one-line error otherwise)."""
    for entry in meta.get("stack", []):
        part = path / entry["dir"]
        if not part.is_dir():
            raise LegatoInputError(f"{path} is a stack whose part {entry['dir']} (from {entry.get('source')}) "
                                   "is missing: the artifact is incomplete")
        if artifact_digest(part) != entry["digest"]:
            raise LegatoInputError(f"{path} is a stack whose part {entry['dir']} (from {entry.get('source')}) "
                                   "changed since it was written: its digest does not match")
    return list(meta.get("stack", []))
