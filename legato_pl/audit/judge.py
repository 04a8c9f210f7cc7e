"""The judge every attack reports with: nearest real-photo centroid under an identity encoder (dlib by default)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from legato_pl.errors import LegatoInputError
from legato_pl.metrics.encoders import IdentityEncoder, resize_images
from legato_pl.metrics.identity import class_centroids


class IdentityJudge:
    """Nearest-centroid identification over the classes of ``real_by_label`` (``{class: photos}``).

    The same judge as the benchmarks: an image counts as its person when the person's centroid of
    held-out real photos is the nearest (cosine) of all the people's.
    """

    def __init__(self, encoder: IdentityEncoder, real_by_label: dict[int, Tensor], image_size: int):
        if len(real_by_label) < 2:
            raise LegatoInputError("the judge needs real photos of at least two people")
        self.encoder, self.image_size = encoder, image_size
        self.classes = sorted(real_by_label)
        # real photos at the samples' resolution, so both lose the same detail before the encoder
        photos = resize_images(torch.cat([real_by_label[c] for c in self.classes]), image_size)
        labels = torch.cat([torch.full((len(real_by_label[c]),), i) for i, c in enumerate(self.classes)])
        self.centroids = class_centroids(self.embed(photos), labels, len(self.classes))

    def embed(self, images: Tensor) -> Tensor:
        return F.normalize(self.encoder(images).float(), dim=1)

    def predict(self, images: Tensor) -> Tensor:
        """The class each image is nearest to."""
        nearest = (self.embed(images) @ self.centroids.T).argmax(dim=1)
        return torch.tensor(self.classes)[nearest]

    def accuracy(self, images: Tensor, label: int) -> float:
        """Share of ``images`` identified as class ``label``."""
        if label not in self.classes:
            raise LegatoInputError(f"the judge has no real photos of class {label}")
        return float((self.predict(images) == label).float().mean())
