"""The model card of an artifact: ``README.md`` with YAML front matter (the convention of diffusers' LoRA training
scripts and model hubs), so an artifact directory says what it is when shared.

The front matter holds the base model, the person(s) erased, the method and its options, the strength it loads
at, how it was trained, and, once ``audit`` (or a benchmark) has run on it, what was measured. The body is
generated from the front matter; :func:`read_model_card` returns the front matter as a dict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from legato_pl.errors import LegatoInputError

CARD_FILE = "README.md"


def read_model_card(path: str | Path) -> dict[str, Any]:
    """The front matter of ``path/README.md`` (an artifact directory)."""
    file = Path(path) / CARD_FILE
    if not file.is_file():
        raise LegatoInputError(f"{path} has no model card ({CARD_FILE})")
    text = file.read_text()
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise LegatoInputError(f"{file} has no YAML front matter (--- ... ---)")
    return yaml.safe_load(text[4:].split("\n---\n", 1)[0]) or {}


def write_model_card(path: str | Path, card: dict[str, Any]) -> Path:
    """Write ``card`` as ``path/README.md``: YAML front matter and a body generated from it."""
    card = json.loads(json.dumps(card, default=str))  # plain data only (paths, tuples -> str, list)
    file = Path(path) / CARD_FILE
    front = yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=120)
    file.write_text(f"---\n{front}---\n\n{_body(card)}")
    return file


def update_model_card(path: str | Path, meta: dict[str, Any], **sections: Any) -> Path:
    """Merge ``sections`` (e.g. ``audit={...}``) into the artifact's card; a missing card is started from ``meta``,
    the artifact's ``legato_method.json`` (:func:`~legato_pl.methods.artifact.read_method_file`)."""
    try:
        card = read_model_card(path)
    except LegatoInputError:
        card = card_from_method(meta)
    card.update(sections)
    return write_model_card(path, card)


def card_from_method(meta: dict[str, Any], forget: list[str] | None = None, training: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """The card of a freshly saved artifact, from its ``legato_method.json`` content."""
    base = (meta.get("base_model") or {}).get("path")
    method = meta.get("method") or meta.get("class", "?")
    card: dict[str, Any] = {
        "library_name": "legato_pl",
        "tags": ["legato_pl", "unlearning", "diffusers", method],
        "base_model": base,
        "forget": list(forget or []),
        "method": method,
        "method_options": meta.get("options", {}),
        "strength": 1.0,
    }
    if meta.get("stack"):  # earlier requests this one deploys on top of (held in stack/)
        card["stack"] = [{"method": e.get("method"), "forget": e.get("forget", [])} for e in meta["stack"]]
    if training:
        card["training"] = training
    return card


def _body(card: dict[str, Any]) -> str:
    people = ", ".join(card.get("forget") or []) or "(not recorded)"
    lines = [f"# {card.get('method', '?')} artifact: forgets {people}", "",
             f"An unlearning artifact made with legato_pl for the base model `{card.get('base_model')}`: loaded on it, "
             f"the model stops drawing {people}. Strength 0 is the base model exactly, 1 the trained artifact.", "",
             "```python", "from legato_pl.methods import load_method",
             "method = load_method(pipe.unet, ARTIFACT_DIR, strength=1.0)  # pipe: the base model's diffusers pipeline",
             "```", ""]
    if card.get("stack"):
        earlier = "; ".join(", ".join(e.get("forget") or ["(not recorded)"]) for e in card["stack"])
        lines += [f"A stack: deployed on top of {len(card['stack'])} earlier request(s) ({earlier}), held in "
                  "`stack/` and loaded with it at strength 1; strength 0 is base + those requests.", ""]
    audit = card.get("audit")
    if audit:
        lines += [f"## Audit ({audit.get('forget', people)})", "", *[f"- {v}" for v in audit.get("verdicts", [])], ""]
    evaluation = card.get("evaluation")
    if evaluation:
        lines += ["## Measured forgetting", "", *[f"- {k}: {v}" for k, v in evaluation.items()], ""]
    return "\n".join(lines)
