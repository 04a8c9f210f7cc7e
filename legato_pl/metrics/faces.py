"""Face rate: share of images in which MTCNN (facenet-pytorch, weights shipped in the wheel) finds a face."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from legato_pl.metrics.encoders import check_images
from legato_pl.metrics.identity import _MeanMetric


@functools.cache
def load_mtcnn(device: str = "cpu"):
    """facenet-pytorch's MTCNN (single-face mode), built once per device."""
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=False, device=device).eval()


class FaceRate(_MeanMetric):
    """Share of images with a face detected with probability >= ``min_prob``.

    Small samples (32x32, 64x64) are upsampled to ``detect_size`` first: MTCNN's smallest face is 20 px.
    On LFW crops at 32 and 64 px it finds a face in every image, on uniform or noise images in none.
    """

    higher_is_better = True

    def __init__(self, min_prob: float = 0.9, detect_size: int = 160, **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_prob = float(min_prob)
        self.detect_size = int(detect_size)

    @torch.no_grad()
    def detect(self, images: Tensor) -> Tensor:
        """Per-image face probability (0 when no face), ``[N]`` float on CPU."""
        images = check_images(images)
        if images.shape[0] == 0:
            return torch.zeros(0)
        size = (self.detect_size, self.detect_size)
        x = F.interpolate(images.detach().float().cpu(), size=size, mode="bilinear", align_corners=False)
        x = ((x.clamp(-1, 1) + 1.0) * 127.5).permute(0, 2, 3, 1).contiguous()
        _, probs = load_mtcnn("cpu").detect(x)
        return torch.tensor([float(p[0]) if p[0] is not None else 0.0 for p in probs], dtype=torch.float32)

    def update(self, images: Tensor) -> None:
        self._add(self.detect(images) >= self.min_prob)
