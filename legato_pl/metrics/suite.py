"""Every unlearning metric of the design in one object, :class:`UnlearningMetrics`.

``update(before, after, labels)`` takes samples generated with the same seeds at strength 0
(``before``) and at the evaluated strength (``after``), ``[N, 3, H, W]`` in [-1, 1], and the class
each row was conditioned on. Rows whose label is in ``forget_labels`` are *forget* rows, the others
*retain* rows. "Centroid" means the L2-normalised mean embedding of a class's held-out real photos;
"nearest" is by cosine over the centroids of every class in ``real_images``.

``compute()`` returns (all floats):

- ``ID_forget``: mean cosine similarity of the paired before/after embeddings, forget rows.
- ``ID_retain``: the same over retain rows.
- ``ID_real_forget``: mean cosine similarity of after embeddings to their class centroid, forget rows.
- ``acc_forget`` / ``acc_retain``: share of after samples whose nearest centroid is their class.
- ``acc_forget_before`` / ``acc_retain_before``: the same for the before samples.
- ``FD_pre``: Fréchet distance between before and after embeddings, retain rows.
- ``dFD_real``: FD(real, after) - FD(real, before) on embeddings, retain rows; real = all held-out
  real photos of the retain identities.
- with ``fid=True``: ``FID_pre`` and ``dFID_real``, the same two with FID Inception-v3 features.
- with ``face_rate=True``: ``face_rate`` / ``face_rate_before``, share of after / before samples
  (all rows) in which MTCNN finds a face.

Forgetting depth (a nearest-centroid classifier can flip on a small perturbation; these cannot):

- ``different_people_cosine``: mean cosine between the real-photo centroids of two different people
  (a constant of the encoder and the photos): the similarity of two *different* people.
- ``moved_forget``: share of forget rows whose before/after cosine is at or below
  ``different_people_cosine``: the sample changed as much as one person differs from another.
- ``nearest_changed_forget``: share of forget rows whose nearest real person changed before -> after.
- ``pixel_change_forget`` / ``pixel_change_retain``: mean absolute pixel change per sample, 0-255 scale.

``update`` also returns the per-row values (``forget`` mask, ``id_cos``, ``correct``, ``moved``,
``nearest_changed``, ``pixel_change`` and both embeddings) for bootstrap intervals.

A key that cannot be computed (no forget rows, fewer than two rows for a Fréchet distance, fewer
than two real retain photos) is left out of the dict, never NaN.

Every sub-metric is a torchmetrics ``Metric`` with sum-reduced states (the real-photo centroids and
statistics are fixed buffers), so ``compute()`` is exact under DDP with each rank updating its own rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from legato_pl.errors import LegatoInputError
from legato_pl.metrics.encoders import IdentityEncoder, InceptionFeatures, check_images, resize_images
from legato_pl.metrics.faces import FaceRate
from legato_pl.metrics.frechet import FrechetDistance, feature_statistics
from legato_pl.metrics.identity import (
    CentroidAccuracy,
    CentroidSimilarity,
    MeanValue,
    PairedCosineSimilarity,
    class_centroids,
    different_people_cosine,
)


class UnlearningMetrics(nn.Module):
    """Identity, quality and face metrics of an unlearned generator (keys: see the module docstring).

    ``real_images`` maps each class label to its held-out real photos at the sample resolution
    (or pass ``image_size`` to resize them); they are embedded once, here.
    """

    def __init__(
        self,
        encoder: IdentityEncoder,
        real_images: Mapping[int, Tensor],
        forget_labels: Sequence[int],
        fid: bool = False,
        face_rate: bool = False,
        image_size: int | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__()
        if not real_images:
            raise LegatoInputError("real_images is empty: give held-out real photos for every evaluated class")
        # Not a submodule: the encoder stays out of state_dict and device moves.
        object.__setattr__(self, "encoder", encoder)
        self.batch_size = int(batch_size)
        self.class_ids = sorted(int(k) for k in real_images)
        self.forget_labels = sorted({int(k) for k in forget_labels})
        missing = [k for k in self.forget_labels if k not in real_images]
        if missing:
            raise LegatoInputError(f"forget labels {missing} have no real photos in real_images")
        self._index = {label: i for i, label in enumerate(self.class_ids)}

        photos = {}
        for label in self.class_ids:
            images = check_images(real_images[label], f"real_images[{label}]")
            if images.shape[0] == 0:
                raise LegatoInputError(f"real_images[{label}] has no images")
            photos[label] = resize_images(images, image_size) if image_size else images.float()
        sizes = {tuple(x.shape[-2:]) for x in photos.values()}
        if len(sizes) != 1:
            raise LegatoInputError(f"real_images have different sizes {sorted(sizes)}; pass image_size to resize them")
        self.image_hw = sizes.pop()

        embeddings = {label: self._embed(x) for label, x in photos.items()}
        all_emb = torch.cat(list(embeddings.values()))
        labels = torch.cat([torch.full((len(e),), self._index[k]) for k, e in embeddings.items()])
        centroids = class_centroids(all_emb, labels, len(self.class_ids))
        self.register_buffer("centroids", centroids, persistent=False)
        dim = centroids.shape[1]

        self.id_forget, self.id_retain = PairedCosineSimilarity(), PairedCosineSimilarity()
        self.id_real_forget = CentroidSimilarity(centroids)
        self.acc_forget, self.acc_retain = CentroidAccuracy(centroids), CentroidAccuracy(centroids)
        self.acc_forget_before, self.acc_retain_before = CentroidAccuracy(centroids), CentroidAccuracy(centroids)
        self.different_people_cosine = different_people_cosine(centroids)
        self.moved_forget, self.nearest_changed_forget = MeanValue(), MeanValue()
        self.pixel_change_forget, self.pixel_change_retain = MeanValue(), MeanValue()

        retain = [k for k in self.class_ids if k not in self.forget_labels]
        self.fd_pre = FrechetDistance(dim)
        self.fd_real_after = self.fd_real_before = None
        real_retain = torch.cat([embeddings[k] for k in retain]) if retain else all_emb[:0]
        if len(real_retain) >= 2:
            ref = feature_statistics(real_retain)
            self.fd_real_after, self.fd_real_before = FrechetDistance(dim, ref), FrechetDistance(dim, ref)

        self.inception = self.fid_pre = self.fid_real_after = self.fid_real_before = None
        if fid:
            self.inception = InceptionFeatures()
            self.fid_pre = FrechetDistance(InceptionFeatures.num_features)
            real_retain = [photos[k] for k in retain]
            if sum(len(x) for x in real_retain) >= 2:
                feats = torch.cat([self.inception(c) for x in real_retain for c in x.split(self.batch_size)])
                ref = feature_statistics(feats)
                self.fid_real_after = FrechetDistance(InceptionFeatures.num_features, ref)
                self.fid_real_before = FrechetDistance(InceptionFeatures.num_features, ref)

        self.face_rate = self.face_rate_before = None
        if face_rate:
            self.face_rate, self.face_rate_before = FaceRate(), FaceRate()

    def _embed(self, images: Tensor) -> Tensor:
        chunks = images.split(self.batch_size) if len(images) else [images]
        out = [self.encoder(chunk) for chunk in chunks]
        emb = torch.cat(out)
        if emb.ndim != 2 or emb.shape[0] != images.shape[0]:
            name = getattr(self.encoder, "name", "?")
            raise LegatoInputError(f"encoder {name} returned {tuple(emb.shape)} for {len(images)} images")
        return emb.float()

    @torch.no_grad()
    def update(self, before: Tensor, after: Tensor, labels: Tensor) -> dict[str, Tensor]:
        before, after = check_images(before, "before"), check_images(after, "after")
        if before.shape != after.shape:
            raise LegatoInputError(f"before and after differ in shape: {tuple(before.shape)} vs {tuple(after.shape)}")
        if tuple(before.shape[-2:]) != self.image_hw:
            raise LegatoInputError(
                f"samples are {tuple(before.shape[-2:])} but real photos are {self.image_hw}; "
                "build UnlearningMetrics with image_size equal to the sample size"
            )
        labels = torch.as_tensor(labels).flatten().tolist()
        if len(labels) != before.shape[0]:
            raise LegatoInputError(f"{len(labels)} labels for {before.shape[0]} samples")
        unknown = sorted({int(k) for k in labels} - set(self._index))
        if unknown:
            raise LegatoInputError(f"labels {unknown} have no real photos (known classes: {self.class_ids})")
        device = self.centroids.device
        idx = torch.tensor([self._index[int(k)] for k in labels], dtype=torch.long, device=device)
        forget = torch.tensor([int(k) in self.forget_labels for k in labels], dtype=torch.bool, device=device)
        retain = ~forget
        emb_b, emb_a = self._embed(before).to(device), self._embed(after).to(device)

        self.id_forget.update(emb_b[forget], emb_a[forget])
        self.id_retain.update(emb_b[retain], emb_a[retain])
        self.id_real_forget.update(emb_a[forget], idx[forget])
        self.acc_forget.update(emb_a[forget], idx[forget])
        self.acc_retain.update(emb_a[retain], idx[retain])
        self.acc_forget_before.update(emb_b[forget], idx[forget])
        self.acc_retain_before.update(emb_b[retain], idx[retain])
        self.fd_pre.update(emb_b[retain], real=True)
        self.fd_pre.update(emb_a[retain], real=False)
        if self.fd_real_after is not None:
            self.fd_real_after.update(emb_a[retain], real=False)
            self.fd_real_before.update(emb_b[retain], real=False)

        if self.inception is not None:
            rows = retain.to(before.device)
            feat_b, feat_a = self.inception(before[rows]), self.inception(after[rows])
            self.fid_pre.update(feat_b, real=True)
            self.fid_pre.update(feat_a, real=False)
            if self.fid_real_after is not None:
                self.fid_real_after.update(feat_a, real=False)
                self.fid_real_before.update(feat_b, real=False)
        if self.face_rate is not None:
            self.face_rate.update(after)
            self.face_rate_before.update(before)

        rows = self.row_values(emb_b, emb_a, idx, before, after)
        rows["forget"] = forget
        self.moved_forget.update(rows["moved"][forget])
        self.nearest_changed_forget.update(rows["nearest_changed"][forget])
        self.pixel_change_forget.update(rows["pixel_change"][forget])
        self.pixel_change_retain.update(rows["pixel_change"][retain])
        return rows

    def row_values(self, emb_b: Tensor, emb_a: Tensor, idx: Tensor, before: Tensor, after: Tensor) -> dict[str, Tensor]:
        """Per-sample values behind the means (``idx``: row class as an index into the centroids)."""
        unit_b, unit_a = F.normalize(emb_b.float(), dim=1), F.normalize(emb_a.float(), dim=1)
        id_cos = (unit_b * unit_a).sum(dim=1)
        nearest_b, nearest_a = (unit_b @ self.centroids.T).argmax(1), (unit_a @ self.centroids.T).argmax(1)
        pixels = (after.float() - before.float()).abs().flatten(1).mean(1).to(idx.device) * 127.5  # [-1, 1] -> 0-255
        return {"id_cos": id_cos, "correct": nearest_a.eq(idx).float(), "correct_before": nearest_b.eq(idx).float(),
                "moved": (id_cos <= self.different_people_cosine).float(),
                "nearest_changed": nearest_a.ne(nearest_b).float(), "pixel_change": pixels,
                "emb_before": emb_b, "emb_after": emb_a}

    def compute(self) -> dict[str, float]:
        values = {
            "ID_forget": self.id_forget,
            "ID_retain": self.id_retain,
            "ID_real_forget": self.id_real_forget,
            "acc_forget": self.acc_forget,
            "acc_retain": self.acc_retain,
            "acc_forget_before": self.acc_forget_before,
            "acc_retain_before": self.acc_retain_before,
            "FD_pre": self.fd_pre,
            "FID_pre": self.fid_pre,
            "face_rate": self.face_rate,
            "face_rate_before": self.face_rate_before,
            "moved_forget": self.moved_forget,
            "nearest_changed_forget": self.nearest_changed_forget,
            "pixel_change_forget": self.pixel_change_forget,
            "pixel_change_retain": self.pixel_change_retain,
        }
        out = {key: float(metric.compute()) for key, metric in values.items() if metric is not None}
        for key, after, before in (
            ("dFD_real", self.fd_real_after, self.fd_real_before),
            ("dFID_real", self.fid_real_after, self.fid_real_before),
        ):
            if after is not None:
                out[key] = float(after.compute()) - float(before.compute())
        out["different_people_cosine"] = self.different_people_cosine
        return {key: value for key, value in out.items() if not math.isnan(value)}

    def reset(self) -> None:
        """Clear every accumulated sample (the real-photo centroids and statistics are kept)."""
        for module in self.children():
            if hasattr(module, "reset"):
                module.reset()
