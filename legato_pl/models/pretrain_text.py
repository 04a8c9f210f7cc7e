"""TextToImagePretrainModule: a small text-to-image base in the Stable Diffusion layout, captions from templates.

Each photo of person P is captioned by a random template ("a photo of P", ...); the prompt goes through
a CLIP text encoder built from config with CLIP's real tokenizer (offline). Before the UNet trains, the
encoder learns to tell the names apart (:mod:`legato_pl.models.name_separation`, what CLIP's pretraining
gives SD); then it is frozen by default and the UNet's cross-attention (plus, as configured, the pooled
prompt in its time embedding) learns to draw the named person. The result is saved as a
``StableDiffusionPipeline`` directory (plus ``identities.json``), so the code that unlearns it is the code
that unlearns a real SD checkpoint.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from legato_pl.conditioning import DEFAULT_TEMPLATES, TextConditioning
from legato_pl.models.base import IDENTITIES_FILE
from legato_pl.models.diffusion import denoising_loss, micro_step
from legato_pl.models.name_separation import separate_names
from legato_pl.models.pretrain import PretrainBase
from legato_pl.models.text_to_image import build_text_to_image


class TextToImagePretrainModule(PretrainBase):
    """Trains the UNet of a fresh text-to-image pipeline on captioned identity photos.

    Args:
        output_dir: where the pipeline directory is written at the end of fit.
        unet: ``UNet2DConditionModel`` kwargs (cross-attention width follows the text encoder).
        text_encoder: ``CLIPTextConfig`` kwargs (vocabulary and length follow the tokenizer).
        vae: ``AutoencoderKL`` kwargs for a latent model (None: pixel space). Note that a VAE built
            here is untrained; it exercises the latent path, it does not make good latents.
        prompt_templates: caption templates with one ``{}`` for the name.
        caption_dropout: probability of the empty prompt (for classifier-free guidance).
        train_text_encoder: also train the text encoder with the UNet (default: frozen after name separation).
        name_separation_steps: steps of :func:`~legato_pl.models.name_separation.separate_names` on the
            training prompts before the UNet trains (0: the text encoder stays at its random init, whose
            states the UNet learns to ignore; the role CLIP's pretraining plays for SD).
    """

    def __init__(
        self,
        output_dir: str = "runs/t2i/base",
        unet: dict[str, Any] | None = None,
        text_encoder: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        prompt_templates: list[str] | None = None,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        caption_dropout: float = 0.1,
        train_text_encoder: bool = False,
        name_separation_steps: int = 300,
        lr: float = 2e-4,
        warmup_steps: int = 100,
        ema_decay: float | None = 0.999,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.pipeline = None
        self.unet = self.text_encoder = self.ema = None
        self.identities: list[str] = []

    @override
    def configure_model(self) -> None:
        if self.unet is not None:
            return
        h = self.hparams
        dm = self.trainer.datamodule
        self.identities = list(dm.class_names)
        factor = 2 ** (len(h.vae.get("block_out_channels", [64])) - 1) if h.vae is not None else 1
        unet = {**(h.unet or {}), "sample_size": dm.image_size // factor}
        text = h.text_encoder or {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                  "num_attention_heads": 4}
        self.pipeline = build_text_to_image(unet, text, h.vae, h.num_train_timesteps, h.beta_schedule)
        self.unet, self.text_encoder = self.pipeline.unet, self.pipeline.text_encoder
        self.scheduler = self.pipeline.scheduler
        self.conditioning = c = TextConditioning(self.pipeline.tokenizer, self.text_encoder, self.identities,
                                                 h.prompt_templates or DEFAULT_TEMPLATES,
                                                 vae=self.pipeline.vae)  # freezes the text encoder
        if h.name_separation_steps > 0:
            labels = torch.arange(len(self.identities)).repeat_interleave(len(c.templates))
            prompts = [c.prompt(int(y), k % len(c.templates)) for k, y in enumerate(labels)]
            losses = separate_names(self.text_encoder, c.token_ids(prompts), labels, h.name_separation_steps,
                                    seed=h.seed)
            rank_zero_info(f"text encoder: names separated in {len(losses)} steps "
                           f"(loss {losses[0]:.3f} -> {losses[-1]:.3f})")
        if h.train_text_encoder:
            self.text_encoder.requires_grad_(True).train()
        if h.ema_decay is not None:
            self.ema = copy.deepcopy(self.unet).requires_grad_(False)
        rank_zero_info(f"text-to-image base: UNet {sum(p.numel() for p in self.unet.parameters()):,} parameters, "
                       f"text encoder {sum(p.numel() for p in self.text_encoder.parameters()):,}, "
                       f"{len(self.identities)} identities")

    @override
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images, labels = batch["images"], batch["labels"]
        gen, dropped, rank, world = self.step_draws(len(labels), self.hparams.caption_dropout, batch_idx)
        choice = torch.Generator().manual_seed(self.hparams.seed * 1_000_003 + micro_step(self, batch_idx))
        if self.hparams.train_text_encoder:
            self.conditioning._cache.clear()  # the encoder changes every step
            with torch.enable_grad():
                cond = self._encode_with_grad(labels, choice)
        else:
            cond = self.conditioning.encode(self.unet, labels.cpu(), generator=choice)
        null = self.conditioning.null(self.unet, len(labels))
        cond = torch.where(dropped[:, None, None], null, cond)
        loss = denoising_loss(self.scheduler, self.conditioning.to_latents(images),
                              lambda x, t: self.conditioning.predict(self.unet, x, t, cond), gen, rank, world)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _encode_with_grad(self, labels: torch.Tensor, choice: torch.Generator) -> torch.Tensor:
        c = self.conditioning
        return self.text_encoder(c.token_ids(c.prompts(labels, choice)))[0]

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [*self.unet.parameters(), *(self.text_encoder.parameters() if self.hparams.train_text_encoder else [])]

    @override
    def on_train_end(self) -> None:
        if self.trainer.is_global_zero:
            if self.ema is not None:
                self.unet.load_state_dict(self.ema.state_dict())
            path = Path(self.hparams.output_dir)
            self.pipeline.save_pretrained(str(path))
            (path / IDENTITIES_FILE).write_text(json.dumps(self.identities, indent=1) + "\n")
            rank_zero_info(f"text-to-image base written to {path}")
