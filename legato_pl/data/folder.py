"""Folder-per-identity image trees (LFW / VGGFace2 / CelebA-by-identity layout)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from legato_pl.errors import LegatoInputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".pgm"}


def scan_identity_folder(root: str | Path) -> dict[str, list[Path]]:
    """``{identity name: sorted image paths}`` for every subfolder of ``root``; empty folders raise."""
    root = Path(root)
    if not root.is_dir():
        raise LegatoInputError(f"data root {root} does not exist or is not a directory")
    people = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise LegatoInputError(f"identity folder {folder} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        people[folder.name] = files
    if not people:
        raise LegatoInputError(f"data root {root} has no identity subfolders (expected one folder per person)")
    return people


def load_image(path: Path, size: int) -> Tensor:
    """RGB image as ``[3, size, size]`` in [-1, 1]; an unreadable file raises naming it."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
            array = np.asarray(img, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise LegatoInputError(f"unreadable image {path}: {err}") from None
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def load_images(paths: list[Path], size: int) -> Tensor:
    return torch.stack([load_image(p, size) for p in paths])


def is_heldout(name: str, fraction: float) -> bool:
    """Deterministic per-file held-out membership (a hash of the file name, stable across machines)."""
    return zlib.crc32(name.encode()) % 10_000 < fraction * 10_000


def split_heldout(files: list[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    """Split one identity's files into (train, held-out); both non-empty when there are two or more files."""
    if fraction <= 0 or len(files) < 2:
        return list(files), []
    heldout = [f for f in files if is_heldout(f.name, fraction)]
    if not heldout:
        heldout = [min(files, key=lambda f: zlib.crc32(f.name.encode()))]
    if len(heldout) == len(files):
        heldout = heldout[:-1]
    train = [f for f in files if f not in heldout]
    return train, heldout
