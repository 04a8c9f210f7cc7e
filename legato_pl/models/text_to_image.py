"""Text-to-image bases in the Stable Diffusion layout (``unet/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``, optional ``vae/``): built from configs for tests and our LFW t2i base, and loaded
through ``DiffusionPipeline.from_pretrained`` so a real SD 1.x / 2.x directory or hub id loads alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from torch import nn

from legato_pl.errors import LegatoInputError

# the model_index classes we can unlearn by prompt (an SDXL refiner, inpainting, ControlNet, DiT / Flux: refused)
TEXT_TO_IMAGE_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")


def build_text_to_image(unet: dict[str, Any], text_encoder: dict[str, Any], vae: dict[str, Any] | None = None,
                        num_train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2"):
    """A fresh ``StableDiffusionPipeline`` from configs, with CLIP's real tokenizer (offline).

    ``vae=None`` makes a pixel-space model (the UNet sees images); with a VAE config it is latent.
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from legato_pl.conditioning.tokenizer import offline_clip_tokenizer

    tokenizer = offline_clip_tokenizer()
    text_config = CLIPTextConfig(**{"vocab_size": len(tokenizer), "max_position_embeddings": tokenizer.model_max_length,
                                    **text_encoder})
    autoencoder = AutoencoderKL(**vae) if vae is not None else None
    channels = autoencoder.config.latent_channels if autoencoder is not None else 3
    unet_model = UNet2DConditionModel(**{"in_channels": channels, "out_channels": channels, **unet,
                                         "cross_attention_dim": text_config.hidden_size})
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, clip_sample=False,
                              steps_offset=1)
    return StableDiffusionPipeline(vae=autoencoder, text_encoder=CLIPTextModel(text_config), tokenizer=tokenizer,
                                   unet=unet_model, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def build_text_to_image_xl(unet: dict[str, Any], text_encoder: dict[str, Any], text_encoder_2: dict[str, Any],
                           vae: dict[str, Any], num_train_timesteps: int = 1000):
    """A fresh ``StableDiffusionXLPipeline`` from configs (two CLIP text encoders, the second with a projection;
    CLIP's real tokenizer for both, offline), the UNet's ``text_time`` addition sized to them. For tests."""
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from legato_pl.conditioning.tokenizer import offline_clip_tokenizer

    tokenizer = offline_clip_tokenizer()
    common = {"vocab_size": len(tokenizer), "max_position_embeddings": tokenizer.model_max_length}
    first, second = CLIPTextConfig(**{**common, **text_encoder}), CLIPTextConfig(**{**common, **text_encoder_2})
    autoencoder = AutoencoderKL(**vae)
    time_dim = unet.get("addition_time_embed_dim", 8)
    unet_model = UNet2DConditionModel(**{
        "in_channels": autoencoder.config.latent_channels, "out_channels": autoencoder.config.latent_channels,
        **unet, "cross_attention_dim": first.hidden_size + second.hidden_size, "addition_embed_type": "text_time",
        "addition_time_embed_dim": time_dim, "projection_class_embeddings_input_dim": 6 * time_dim
        + second.projection_dim})
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="scaled_linear", clip_sample=False,
                              steps_offset=1)
    return StableDiffusionXLPipeline(vae=autoencoder, text_encoder=CLIPTextModel(first),
                                     text_encoder_2=CLIPTextModelWithProjection(second), tokenizer=tokenizer,
                                     tokenizer_2=offline_clip_tokenizer(), unet=unet_model, scheduler=scheduler)


def is_text_to_image(path: Path) -> bool:
    index = path / "model_index.json"
    return index.is_file() and json.loads(index.read_text()).get("_class_name") in TEXT_TO_IMAGE_PIPELINES


def load_text_to_image(path: str | Path) -> tuple[Any, DDPMScheduler]:
    """``(pipeline, training scheduler)`` of an SD / SDXL-layout directory or hub id.

    Every component is loaded in fp32 whatever dtype it is stored in (an fp16 SD checkpoint included): the
    objective trains in fp32 on CPU and GPU alike. The artifacts it writes load onto an fp16 / bf16
    pipeline (:func:`legato_pl.methods.load_method` follows the UNet's dtype).
    """
    from diffusers import DiffusionPipeline

    index_file = Path(path) / "model_index.json"
    index = json.loads(index_file.read_text()) if index_file.is_file() else {}
    absent = {k: None for k in ("vae", "safety_checker", "feature_extractor", "image_encoder")
              if k in index and index[k] in (None, [None, None])}
    try:
        pipe = DiffusionPipeline.from_pretrained(str(path), **{"safety_checker": None, **absent})
    except (OSError, ValueError) as err:
        raise LegatoInputError(f"cannot load the text-to-image pipeline {path}: {str(err).splitlines()[0]}") from None
    if type(pipe).__name__ not in TEXT_TO_IMAGE_PIPELINES:
        raise LegatoInputError(f"{path} is a {type(pipe).__name__}; supported: DDPMPipeline with identities.json "
                               f"(class-conditional) and {', '.join(TEXT_TO_IMAGE_PIPELINES)}")
    for component in pipe.components.values():  # after loading: the ``torch_dtype`` keyword varies by version
        if isinstance(component, nn.Module) and any(p.dtype != torch.float32 for p in component.parameters()):
            component.to(torch.float32)  # module by module: the pipeline's own ``to`` warns even when all is fp32
    vae = getattr(pipe, "vae", None)
    if vae is None and pipe.unet.config.in_channels != 3:
        raise LegatoInputError(f"{path}: the UNet takes {pipe.unet.config.in_channels}-channel latents but the "
                               "pipeline has no VAE to encode photos")
    return pipe, DDPMScheduler.from_config(pipe.scheduler.config)
