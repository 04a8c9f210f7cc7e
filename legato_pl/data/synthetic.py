"""Embedded synthetic identities: procedurally drawn faces, so the main job needs no download.

Each identity has fixed facial parameters (skin, hair, eye colour and spacing, face shape, mouth);
each image varies pose (shift, scale), lighting and noise. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _soft(d: np.ndarray, sharpness: float) -> np.ndarray:
    """Soft inside-mask of a signed distance-like field (d < 1 inside)."""
    return 1.0 / (1.0 + np.exp((d - 1.0) * sharpness))


def _identity_params(rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    return {
        "skin": rng.uniform([0.45, 0.30, 0.20], [0.95, 0.80, 0.70]),
        "hair": rng.uniform(0.0, 0.9, size=3),
        "eyes": rng.uniform(0.0, 0.8, size=3),
        "background": rng.uniform(0.1, 0.9, size=3),
        "face_w": rng.uniform(0.28, 0.40),
        "face_h": rng.uniform(0.36, 0.46),
        "eye_dx": rng.uniform(0.10, 0.18),
        "eye_r": rng.uniform(0.035, 0.07),
        "eye_y": rng.uniform(-0.12, -0.02),
        "mouth_w": rng.uniform(0.08, 0.18),
        "mouth_curve": rng.uniform(-0.08, 0.08),
        "hair_h": rng.uniform(0.05, 0.30),
    }


def _render(p: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    shift = rng.uniform(-0.05, 0.05, size=2)
    scale = rng.uniform(0.93, 1.07)
    light = rng.uniform(0.85, 1.15)
    coords = (np.arange(size) + 0.5) / size - 0.5
    y, x = np.meshgrid(coords, coords, indexing="ij")
    x = (x - shift[0]) / scale
    y = (y - shift[1]) / scale
    sharp = size / 2.0
    img = np.ones((size, size, 3)) * p["background"]

    def paint(mask: np.ndarray, colour: np.ndarray) -> None:
        nonlocal img
        img = img * (1 - mask[..., None]) + mask[..., None] * colour

    hair = _soft(np.sqrt((x / (p["face_w"] * 1.12)) ** 2 + ((y + p["hair_h"] * 0.5) / (p["face_h"] * 1.05)) ** 2), sharp)
    paint(hair, p["hair"])
    paint(_soft(np.sqrt((x / p["face_w"]) ** 2 + ((y - 0.03) / p["face_h"]) ** 2), sharp), p["skin"])
    for side in (-1, 1):
        eye = np.sqrt(((x - side * p["eye_dx"]) / p["eye_r"]) ** 2 + ((y - p["eye_y"]) / (p["eye_r"] * 0.8)) ** 2)
        paint(_soft(eye, sharp * 0.5), np.array([0.95, 0.95, 0.95]))
        paint(_soft(eye * 1.8, sharp * 0.5), p["eyes"])
    mouth_y = 0.2 + p["mouth_curve"] * (x / p["mouth_w"]) ** 2
    mouth = np.sqrt((x / p["mouth_w"]) ** 2 + ((y - mouth_y) / 0.025) ** 2)
    paint(_soft(mouth, sharp * 0.3), np.array([0.55, 0.12, 0.15]))
    img = img * light + rng.normal(0.0, 0.02, size=img.shape)
    return np.clip(img, 0.0, 1.0)


def synthetic_identities(
    num_identities: int = 8, images_per_identity: int = 32, image_size: int = 32, seed: int = 0
) -> dict[str, Tensor]:
    """``{"person_00": [N, 3, S, S] in [-1, 1], ...}``: distinct, recognisable synthetic identities."""
    out = {}
    for i in range(num_identities):
        params = _identity_params(np.random.default_rng([seed, i, 0]))
        rng = np.random.default_rng([seed, i, 1])
        images = np.stack([_render(params, image_size, rng) for _ in range(images_per_identity)])
        out[f"person_{i:02d}"] = torch.from_numpy(images).permute(0, 3, 1, 2).float() * 2.0 - 1.0
    return out
