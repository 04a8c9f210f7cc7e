"""Unlearning methods as plug-ins: one file each; any registered method trains, sweeps, saves and loads alike."""

from legato_pl.methods.artifact import METHOD_FILE, read_method_file
from legato_pl.methods.base import (
    MethodFactory,
    UnlearningMethod,
    build_method,
    load_method,
    method_class,
    method_spec,
    unet_fingerprint,
)
from legato_pl.methods.card import read_model_card, update_model_card, write_model_card
from legato_pl.methods.full import Full
from legato_pl.methods.legato import Legato, Residual
from legato_pl.methods.lora import LoRA

__all__ = ["Full", "Legato", "LoRA", "METHOD_FILE", "MethodFactory", "Residual", "UnlearningMethod", "build_method",
           "load_method", "method_class", "method_spec", "read_method_file", "read_model_card", "unet_fingerprint",
           "update_model_card", "write_model_card"]
