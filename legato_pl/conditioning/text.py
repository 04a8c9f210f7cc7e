"""Text-conditional models (Stable Diffusion layout): identity = a person's name inside prompt templates."""

from __future__ import annotations

import random

import torch
from torch import Tensor, nn

from legato_pl.conditioning.base import Conditioning
from legato_pl.errors import LegatoInputError

DEFAULT_TEMPLATES = ("a photo of {}", "a portrait of {}", "{} smiling", "a close-up photo of {}", "{}, headshot")
SOFT_TOKEN = "<*>"  # in :meth:`TextConditioning.soft_states`: one learnable input embedding
STRANGER = "Halvard Quennell"  # a name no base was trained on (the relearning reference)
SYLLABLES = ("hal", "vard", "quen", "nell", "dor", "mis", "ren", "tov", "bel", "kas", "lun", "fer", "gil", "ost",
             "rud", "wic", "sel", "ambr", "oth", "ive")


def display_name(identity: str) -> str:
    """Folder names to prompt text: ``George_W_Bush`` -> ``George W Bush``."""
    return identity.replace("_", " ")


def stranger_name(seed: int) -> str:
    """A made-up two-part name drawn from ``seed`` (``Halvard Quennell``-like): a person no model was trained on."""
    rng = random.Random(seed)

    def part(n: int) -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(n)).capitalize()

    return f"{part(2)} {part(3)}"


def soft_encode(tokenizer, text_encoder: nn.Module, text: str, vectors: Tensor, **kwargs):
    """``text_encoder``'s output for ``text`` whose i-th ``<*>`` is the input embedding ``vectors[i]``."""
    pieces = text.split(SOFT_TOKEN)
    if len(pieces) - 1 != len(vectors):
        raise ValueError(f"{len(pieces) - 1} {SOFT_TOKEN} in {text!r} for {len(vectors)} vectors")
    ids, slots = [tokenizer.bos_token_id], []
    for i, piece in enumerate(pieces):
        ids += tokenizer(piece.strip(), add_special_tokens=False).input_ids if piece.strip() else []
        if i < len(vectors):
            slots.append(len(ids))
            # a placeholder (its embedding is replaced); not the end token: CLIP pools the states at the first one
            ids.append(tokenizer.bos_token_id)
    ids.append(tokenizer.eos_token_id)
    if len(ids) > tokenizer.model_max_length:
        raise ValueError(f"{text!r} is longer than the text encoder's {tokenizer.model_max_length} tokens")
    ids += [tokenizer.pad_token_id] * (tokenizer.model_max_length - len(ids))
    device = next(text_encoder.parameters()).device

    def put(module, args, output):
        output = output.clone()
        output[:, slots] = vectors.to(output.device, output.dtype)
        return output

    handle = text_encoder.get_input_embeddings().register_forward_hook(put)
    try:
        return text_encoder(torch.tensor([ids], device=device), **kwargs)
    finally:
        handle.remove()


class TextConditioning(Conditioning):
    """Prompts through a frozen tokenizer + text encoder; ∅ is the empty prompt, the anchor a concept.

    Args:
        tokenizer, text_encoder: the pipeline's (``CLIPTokenizer`` / ``CLIPTextModel`` or alike).
        identities: person names (folder names are turned into prompt text by :func:`display_name`).
        templates: prompt templates with one ``{}`` for the name; each row draws one.
        anchor: the concept a forgotten person should become under the ``anchor`` target
            (MACE / ESD style, default ``"a person"``); ``""`` is the unconditional prompt.
        vae: for latent models, the autoencoder (its config's ``scaling_factor`` is used).
    """

    any_name = True  # a name goes into the prompt templates: any person can be named

    def __init__(self, tokenizer, text_encoder: nn.Module, identities: list[str],
                 templates: tuple[str, ...] | list[str] = DEFAULT_TEMPLATES, anchor: str = "a person",
                 vae: nn.Module | None = None):
        if not templates:
            raise LegatoInputError("the prompt template list is empty")
        missing = [t for t in templates if t.count("{}") != 1]
        if missing:
            raise LegatoInputError(f"prompt template {missing[0]!r} must contain exactly one {{}} for the person's name")
        self.tokenizer, self.text_encoder = tokenizer, text_encoder.requires_grad_(False).eval()
        self.identities, self.templates, self.anchor_prompt = list(identities), list(templates), anchor
        self.vae = vae.requires_grad_(False).eval() if vae is not None else None
        self._cache: dict[str, Tensor] = {}

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextConditioning:
        for module in self.modules():
            module.to(device=device, dtype=dtype)
        self._cache.clear()
        return self

    def modules(self) -> list[nn.Module]:
        """The networks this conditioning owns (text encoder, VAE when latent)."""
        return [self.text_encoder] + ([self.vae] if self.vae is not None else [])

    def use_identities(self, names: list[str], where: str) -> None:
        """Any name is drawable, unless it tokenizes to nothing (the prompt would not name anyone)."""
        empty = [n for n in names if not self.tokenizer(display_name(n).strip(), add_special_tokens=False).input_ids]
        if empty:
            raise LegatoInputError(f"the name {empty[0]!r} in {where} tokenizes to nothing: the prompt would name nobody")
        super().use_identities(names, where)

    def prompt(self, label: int, template: int = 0) -> str:
        return self.templates[template].format(display_name(self.identities[label]))

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Tensor:
        """``[N, tokens, width]`` text-encoder states (cached per prompt: the encoder is frozen)."""
        new = sorted({p for p in prompts if p not in self._cache})
        if new:
            states = self.text_encoder(self.token_ids(new))[0]
            self._cache.update(zip(new, states))
        return torch.stack([self._cache[p] for p in prompts])

    def prompts(self, labels: Tensor, generator: torch.Generator | None = None) -> list[str]:
        """One prompt per label, each with a template drawn from ``generator`` (a CPU generator)."""
        choice = torch.randint(0, len(self.templates), (len(labels),), generator=generator)
        return [self.prompt(int(y), int(k)) for y, k in zip(labels.tolist(), choice.tolist())]

    def token_ids(self, prompts: list[str]) -> Tensor:
        """Padded token ids on the text encoder's device."""
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
                             return_tensors="pt").input_ids
        return ids.to(next(self.text_encoder.parameters()).device)

    def encode(self, unet: nn.Module, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.for_unet(unet, self.encode_prompts(self.prompts(labels, generator)))

    def null(self, unet: nn.Module, n: int) -> Tensor:
        return self.for_unet(unet, self.encode_prompts([""])).expand(n, -1, -1)

    def anchor(self, unet: nn.Module, n: int) -> Tensor:
        return self.for_unet(unet, self.encode_prompts([self.anchor_prompt])).expand(n, -1, -1)

    def untrained(self, unet: nn.Module, labels: Tensor) -> Tensor:
        """The first template naming a made-up person per label (seeded by it): a model retrained without the person
        knows their name no better than such a name, and a text-to-image model draws a stranger for it."""
        prompts = [self.templates[0].format(stranger_name(int(y))) for y in labels.tolist()]
        return self.for_unet(unet, self.encode_prompts(prompts))

    def predict(self, unet: nn.Module, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return unet(x, t, encoder_hidden_states=cond).sample

    # attacks ------------------------------------------------------------------------------------
    def soft_states(self, text: str, vectors: Tensor) -> Tensor:
        """``[1, tokens, width]`` states of ``text`` whose i-th ``<*>`` is the input embedding ``vectors[i]``
        instead of a token (textual-inversion / prompt-attack style); differentiable in ``vectors``."""
        return soft_encode(self.tokenizer, self.text_encoder, text, vectors)[0]

    def soft_init(self, unet: nn.Module, label: int | None = None) -> Tensor:
        words = "person" if label is None else display_name(self.identities[label])
        ids = self.tokenizer(words, add_special_tokens=False).input_ids
        return self.text_encoder.get_input_embeddings().weight[ids[:1] if label is None else ids].detach().clone()

    def soft_condition(self, unet: nn.Module, vectors: Tensor) -> Tensor:
        """States of the first template with the name replaced by the learnable tokens ``vectors`` ``[K, D]``."""
        return self.for_unet(unet, self.soft_states(self.templates[0].format(" ".join([SOFT_TOKEN] * len(vectors))), vectors))

    def as_stranger(self, unet: nn.Module, label: int) -> TextConditioning:
        identities = list(self.identities)
        identities[label] = STRANGER
        return TextConditioning(self.tokenizer, self.text_encoder, identities, self.templates, self.anchor_prompt,
                                self.vae)

    @staticmethod
    def for_unet(unet: nn.Module, states: Tensor) -> Tensor:
        """``states`` on the UNet's device and dtype."""
        p = next(unet.parameters())
        return states.to(p.device, p.dtype)

    # latents --------------------------------------------------------------------------------------
    def to_latents(self, images: Tensor) -> Tensor:
        if self.vae is None:
            return images
        with torch.no_grad():
            p = next(self.vae.parameters())
            latents = self.vae.encode(images.to(p.device, p.dtype)).latent_dist.mean
        return (latents * self.vae.config.scaling_factor).to(images.device, images.dtype)

    def to_images(self, latents: Tensor) -> Tensor:
        if self.vae is None:
            return latents
        with torch.no_grad():
            p = next(self.vae.parameters())
            images = self.vae.decode(latents.to(p.device, p.dtype) / self.vae.config.scaling_factor).sample
        return images.to(latents.device).clamp(-1, 1)
