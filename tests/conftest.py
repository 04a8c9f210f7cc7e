"""Shared fixtures: tiny UNets and a tiny base-model directory built in-process (no downloads)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel, UNet2DModel

from legato_pl.models.base import build_unet, save_base_model

REPO = Path(__file__).resolve().parents[1]
FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks' harness (saved_bytes, used by tests too)
TINY_UNET = {
    "block_out_channels": [16, 32],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "attention_head_dim": 8,
}
TINY_IDENTITIES = [f"person_{i:02d}" for i in range(4)]


def tiny_unet(num_classes: int = 5, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return build_unet(TINY_UNET, num_classes - 1, 16).eval()


def tiny_condition_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, norm_num_groups=8, attention_head_dim=4,
    ).eval()


def tiny(method: str = "legato"):
    """``method`` for UnlearningModule: ODE methods with an 8-wide field, the others by name."""
    from legato_pl.methods import Legato, Residual

    ode = {"legato": Legato, "residual": Residual}.get(method)
    return functools.partial(ode, adapter={"hidden": 8}) if ode else method


def randomize_(module: torch.nn.Module, scale: float = 0.1, seed: int = 1) -> None:
    """Give every parameter random values (so zero-initialised adapters do something)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture(scope="session")
def faces_root() -> Path:
    if not FACES.is_dir():
        pytest.fail(f"the shared face set is missing at {FACES} (CI provides ../shared beside the clone)")
    return FACES


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    """A tiny class-conditional base model directory for the synthetic identities person_00..03."""
    path = tmp_path_factory.mktemp("base")
    save_base_model(path, tiny_unet(len(TINY_IDENTITIES) + 1), DDPMScheduler(num_train_timesteps=100), TINY_IDENTITIES)
    return path


@pytest.fixture(scope="session")
def drawing_base_dir(tmp_path_factory) -> Path:
    """A tiny base *trained* on the synthetic person_00..03 at 16x16 (300 steps, ~10 s): it draws them, so
    an attack that should recover a person can be seen to succeed or fail."""
    from legato_pl.data import IdentityImages

    torch.manual_seed(0)
    data = IdentityImages(None, 16, 0.25, identities=TINY_IDENTITIES, num_synthetic_identities=4,
                          synthetic_images_per_identity=16)
    x = torch.cat([data.train[n] for n in data.names])
    y = torch.cat([torch.full((len(data.train[n]),), i) for i, n in enumerate(data.names)])
    unet, scheduler = tiny_unet(len(TINY_IDENTITIES) + 1), DDPMScheduler(num_train_timesteps=100)
    optimizer = torch.optim.Adam(unet.parameters(), lr=3e-3)
    unet.train()
    for _ in range(300):
        idx = torch.randint(0, len(x), (16,))
        labels = torch.where(torch.rand(16) < 0.1, len(TINY_IDENTITIES), y[idx])  # null class for guidance
        noise, t = torch.randn(16, 3, 16, 16), torch.randint(0, 100, (16,))
        loss = torch.nn.functional.mse_loss(unet(scheduler.add_noise(x[idx], noise, t), t, class_labels=labels).sample,
                                            noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("drawing_base")
    save_base_model(path, unet.eval(), scheduler, TINY_IDENTITIES)
    return path


def pixel_encoder(images: torch.Tensor) -> torch.Tensor:
    """A judge's encoder for the synthetic people (they differ in colours): 4x4 pooled pixels, L2-normalised."""
    return torch.nn.functional.normalize(torch.nn.functional.avg_pool2d(images.float(), 4).flatten(1), dim=1)


def run_legato(args: list[str], devices: int = 1, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python -m legato_pl <args>`` in a fresh process (CPU DDP over ``devices`` processes when > 1)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    if devices > 1:
        args = [*args, "--trainer.devices", str(devices), "--trainer.strategy", "ddp"]
    return subprocess.run([sys.executable, "-m", "legato_pl", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
