"""Unlearning metrics: identity encoders, identity/Fréchet/face metrics and the full evaluation suite."""

from legato_pl.metrics.encoders import (
    DlibEncoder,
    FacenetEncoder,
    IdentityEncoder,
    InceptionFeatures,
    load_encoder,
    resize_images,
)
from legato_pl.metrics.faces import FaceRate
from legato_pl.metrics.frechet import (
    FID,
    FrechetDistance,
    feature_statistics,
    frechet_distance,
    frechet_inception_distance,
)
from legato_pl.metrics.identity import CentroidAccuracy, CentroidSimilarity, PairedCosineSimilarity, class_centroids
from legato_pl.metrics.suite import UnlearningMetrics

__all__ = [
    "FID",
    "CentroidAccuracy",
    "CentroidSimilarity",
    "DlibEncoder",
    "FaceRate",
    "FacenetEncoder",
    "FrechetDistance",
    "IdentityEncoder",
    "InceptionFeatures",
    "PairedCosineSimilarity",
    "UnlearningMetrics",
    "class_centroids",
    "feature_statistics",
    "frechet_distance",
    "frechet_inception_distance",
    "load_encoder",
    "resize_images",
]
