"""LightningModules: unlearning with adapters and pretraining the base model."""

from legato_pl.conditioning import predict_noise
from legato_pl.models.base import BaseModel, build_unet, load_base_model, save_base_model
from legato_pl.models.pretrain import DiffusionPretrainModule
from legato_pl.models.pretrain_text import TextToImagePretrainModule
from legato_pl.models.unlearning import UnlearningModule

__all__ = [
    "BaseModel",
    "DiffusionPretrainModule",
    "TextToImagePretrainModule",
    "UnlearningModule",
    "build_unet",
    "load_base_model",
    "predict_noise",
    "save_base_model",
]
