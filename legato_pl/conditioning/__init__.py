"""The conditioning layer: how an identity becomes a condition for each kind of model (see base.py)."""

from legato_pl.conditioning.base import Conditioning, check_names
from legato_pl.conditioning.classes import ClassConditioning, class_embedding_override, predict_noise
from legato_pl.conditioning.text import DEFAULT_TEMPLATES, TextConditioning, display_name

__all__ = ["DEFAULT_TEMPLATES", "ClassConditioning", "Conditioning", "TextConditioning", "check_names",
           "class_embedding_override", "display_name", "predict_noise"]
