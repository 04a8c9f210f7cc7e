"""A real CLIP tokenizer offline: the BPE vocabulary that ships inside the ``open-clip-torch`` wheel,
turned into the ``vocab.json`` + ``merges.txt`` that ``transformers.CLIPTokenizer`` reads.

The file is OpenAI CLIP's own vocabulary (49,408 tokens), so prompts tokenize exactly as in Stable
Diffusion 1.x; only the package's data file is read (``open_clip`` is never imported). Install it
with ``pip install --no-deps open-clip-torch`` (``scripts/setup.sh`` does).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import tempfile
from functools import cache
from pathlib import Path

from legato_pl.errors import LegatoInputError

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2  # CLIP's merge count (open_clip.SimpleTokenizer)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def clip_bpe_path() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise LegatoInputError("the offline CLIP tokenizer needs the open-clip-torch wheel: "
                               "pip install --no-deps open-clip-torch")
    path = Path(next(iter(spec.submodule_search_locations))) / BPE_FILE
    if not path.is_file():
        raise LegatoInputError(f"{path} is missing; reinstall open-clip-torch")
    return path


def write_clip_vocabulary(directory: str | Path) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` (CLIP's) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    merges = gzip.open(clip_bpe_path()).read().decode("utf-8").split("\n")[1 : NUM_MERGES + 1]
    byte_chars = list(_bytes_to_unicode().values())
    vocab = [*byte_chars, *(c + "</w>" for c in byte_chars), *("".join(m.split()) for m in merges),
             "<|startoftext|>", "<|endoftext|>"]
    (directory / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return directory / "vocab.json", directory / "merges.txt"


@cache
def _vocabulary_dir() -> Path:
    return write_clip_vocabulary(tempfile.mkdtemp(prefix="legato_clip_vocab_"))[0].parent


def offline_clip_tokenizer(model_max_length: int = 77):
    """``transformers.CLIPTokenizer`` with CLIP's real vocabulary, built without a download."""
    from transformers import CLIPTokenizer

    directory = _vocabulary_dir()
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=model_max_length)
