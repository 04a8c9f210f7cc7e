"""The base model directory: a diffusers pipeline (``model_index.json``, ``unet/``, ``scheduler/``)
plus ``identities.json`` (person names in class-index order; the null class is the last index)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from torch import nn

from legato_pl.conditioning import DEFAULT_TEMPLATES, ClassConditioning, Conditioning, TextConditioning
from legato_pl.errors import LegatoInputError
from legato_pl.models.text_to_image import TEXT_TO_IMAGE_PIPELINES, is_text_to_image, load_text_to_image

IDENTITIES_FILE = "identities.json"


def default_unet_config() -> dict[str, Any]:
    """A small class-conditional UNet2DModel for 32x32 images (~1.2 M parameters)."""
    return {
        "block_out_channels": [32, 64, 64],
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "norm_num_groups": 16,
        "attention_head_dim": 32,
    }


def build_unet(config: dict[str, Any] | None, num_identities: int, image_size: int) -> UNet2DModel:
    """A fresh class-conditional UNet with ``num_identities + 1`` classes (the last is the null class)."""
    kwargs = {**default_unet_config(), **(config or {})}
    kwargs.update(sample_size=image_size, in_channels=3, out_channels=3, num_class_embeds=num_identities + 1)
    return UNet2DModel(**kwargs)


def downsampling_factor(unet: nn.Module) -> int:
    return 2 ** (len(unet.config.block_out_channels) - 1)


@dataclass
class BaseModel:
    """A loaded base: its UNet, training scheduler, known identities and how they become conditions."""

    unet: nn.Module
    scheduler: DDPMScheduler
    identities: list[str]
    text: TextConditioning | None = None  # text-to-image bases: prompts through their text encoder

    @property
    def null_class(self) -> int | None:
        n = getattr(self.unet.config, "num_class_embeds", None)
        return None if n is None or self.text is not None else n - 1

    @property
    def conditioning(self) -> Conditioning | None:
        """How an identity becomes a condition for this model (None: unconditional)."""
        if self.text is not None:
            return self.text
        return None if self.null_class is None else ClassConditioning(self.identities, self.null_class)

    def content_fingerprint(self) -> str:
        """sha256 of the weights that draw (the UNet, and a text model's encoders and VAE): changes when the model
        does, whatever path or hub id it was loaded from."""
        digest = hashlib.sha256()
        modules = [self.unet] + (self.text.modules() if self.text is not None else [])
        for module in modules:
            for name, tensor in module.state_dict().items():
                digest.update(name.encode() + str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]

    def use_identities(self, names: list[str], where: str) -> None:
        """Make ``names`` the people to draw (see :meth:`Conditioning.use_identities`): a class model checks
        them against ``identities.json``, a text model takes any name."""
        conditioning = self.conditioning
        if conditioning is None:
            raise LegatoInputError(f"{where} is unconditional: it draws no particular person")
        conditioning.use_identities(names, where)
        self.identities = conditioning.identities


def save_base_model(path: str | Path, unet: UNet2DModel, scheduler: DDPMScheduler, identities: list[str]) -> Path:
    path = Path(path)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(str(path))
    (path / IDENTITIES_FILE).write_text(json.dumps(list(identities), indent=1) + "\n")
    return path


def is_hub_id(name: str) -> bool:
    """``name`` reads as a hub repository id (``owner/model``), not a local path: it is no local file or
    directory, has exactly one ``/`` and no ``\\``, does not start with ``.``, ``/``, ``~`` or ``runs/``, and
    its owner is not a local directory (``runs/typo`` is a path that does not exist, not a hub id)."""
    if Path(name).expanduser().exists() or name.startswith((".", "/", "~", "runs/")):
        return False
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not Path(name.partition("/")[0]).is_dir()


def load_base_model(path: str | Path, prompt_templates: list[str] | None = None, anchor_prompt: str = "a person"
                    ) -> BaseModel:
    """Load a base model: a class-conditional ``DDPMPipeline`` directory with ``identities.json``, or a
    text-to-image pipeline in the Stable Diffusion layout (a directory or, online, a hub id; its
    identities are named in prompts built from ``prompt_templates``, the anchor concept is
    ``anchor_prompt``). Anything else stops with one clear line."""
    if isinstance(path, str) and is_hub_id(path):
        return _text_to_image_base(path, prompt_templates, anchor_prompt)
    path = Path(path).expanduser()
    if not path.is_dir():
        raise LegatoInputError(f"base model directory {path} does not exist")
    if is_text_to_image(path):
        return _text_to_image_base(path, prompt_templates, anchor_prompt)
    for needed in ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json"):
        if not (path / needed).is_file():
            raise LegatoInputError(f"{path} is not a diffusers pipeline directory (missing {needed})")
    unet_class = json.loads((path / "unet/config.json").read_text()).get("_class_name")
    if unet_class != "UNet2DModel":
        raise LegatoInputError(
            f"{path}/unet is a {unet_class} in a {json.loads((path / 'model_index.json').read_text()).get('_class_name')}; "
            f"supported: DDPMPipeline with a class-conditional UNet2DModel, {', '.join(TEXT_TO_IMAGE_PIPELINES)}"
        )
    unet = UNet2DModel.from_pretrained(str(path), subfolder="unet")
    scheduler = DDPMScheduler.from_pretrained(str(path), subfolder="scheduler")
    n_classes = unet.config.num_class_embeds
    ids_file = path / IDENTITIES_FILE
    if ids_file.is_file():
        identities = json.loads(ids_file.read_text())
        if n_classes is not None and len(identities) != n_classes - 1:
            raise LegatoInputError(
                f"{ids_file} names {len(identities)} identities but the UNet has {n_classes} classes "
                "(expected names + 1 null class)"
            )
    else:
        identities = [f"class_{i}" for i in range((n_classes or 1) - 1)]
    return BaseModel(unet, scheduler, identities)




def _text_to_image_base(path: str | Path, prompt_templates: list[str] | None, anchor_prompt: str) -> BaseModel:
    pipe, scheduler = load_text_to_image(path)
    ids_file = Path(path) / IDENTITIES_FILE
    identities = json.loads(ids_file.read_text()) if ids_file.is_file() else []
    templates, vae = DEFAULT_TEMPLATES if prompt_templates is None else prompt_templates, getattr(pipe, "vae", None)
    if getattr(pipe, "text_encoder_2", None) is not None:  # SDXL
        from legato_pl.conditioning.sdxl import SDXLTextConditioning

        text = SDXLTextConditioning((pipe.tokenizer, pipe.tokenizer_2), (pipe.text_encoder, pipe.text_encoder_2),
                                    identities, templates, anchor_prompt, vae,
                                    bool(pipe.config.get("force_zeros_for_empty_prompt", True)))
    else:
        text = TextConditioning(pipe.tokenizer, pipe.text_encoder, identities, templates, anchor_prompt, vae)
    return BaseModel(pipe.unet, scheduler, identities, text)
