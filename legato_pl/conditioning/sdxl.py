"""Stable Diffusion XL: two tokenizers and text encoders, pooled text embeddings and ``time_ids``.

The condition of a row is one tensor, as for every other conditioning (so guidance, the objective, adjacency and
the attacks need not know the model): the prompt states of both encoders' penultimate layers side by side
``[77, D1 + D2]``, and one extra row holding encoder 2's pooled projection ``[D2]`` (zero-padded). :meth:`predict`
unpacks it into ``encoder_hidden_states`` and ``added_cond_kwargs`` as ``StableDiffusionXLPipeline`` builds them,
with ``time_ids`` = (H, W, 0, 0, H, W) of the image size (no crop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from legato_pl.conditioning.text import DEFAULT_TEMPLATES, STRANGER, TextConditioning, display_name, soft_encode


class SDXLTextConditioning(TextConditioning):
    """Prompts through SDXL's two frozen text encoders (see the module docstring for the packed condition).

    ``force_zeros_for_empty_prompt``: the pipeline's setting (SDXL base: True): ∅ is all zeros, not the encoded
    empty prompt. Other arguments as :class:`TextConditioning`.
    """

    def __init__(self, tokenizers: tuple, text_encoders: tuple[nn.Module, nn.Module], identities: list[str],
                 templates: tuple[str, ...] | list[str] = DEFAULT_TEMPLATES, anchor: str = "a person",
                 vae: nn.Module | None = None, force_zeros_for_empty_prompt: bool = True):
        super().__init__(tokenizers[0], text_encoders[0], identities, templates, anchor, vae)
        self.tokenizer_2, self.text_encoder_2 = tokenizers[1], text_encoders[1].requires_grad_(False).eval()
        self.force_zeros = force_zeros_for_empty_prompt
        self.pooled_dim = self.text_encoder_2.config.projection_dim

    def modules(self) -> list[nn.Module]:
        return [*super().modules(), self.text_encoder_2]

    def _ids(self, tokenizer, prompts: list[str]) -> Tensor:
        return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids.to(next(self.text_encoder.parameters()).device)

    def pack(self, states: Tensor, pooled: Tensor) -> Tensor:
        """``[N, tokens + 1, D1 + D2]``: the states, then the pooled embedding as one zero-padded row."""
        row = F.pad(pooled, (0, states.shape[-1] - pooled.shape[-1]))[:, None]
        return torch.cat([states, row.to(states.dtype)], dim=1)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Tensor:
        new = sorted({p for p in prompts if p not in self._cache})
        if new:
            first = self.text_encoder(self._ids(self.tokenizer, new), output_hidden_states=True)
            second = self.text_encoder_2(self._ids(self.tokenizer_2, new), output_hidden_states=True)
            states = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
            packed = self.pack(states, second.text_embeds)
            if self.force_zeros and "" in new:
                packed[new.index("")] = 0
            self._cache.update(zip(new, packed))
        return torch.stack([self._cache[p] for p in prompts])

    def predict(self, unet: nn.Module, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        states, pooled = cond[:, :-1], cond[:, -1, : self.pooled_dim]
        h, w = (s * self.latent_factor for s in x.shape[-2:])
        time_ids = torch.tensor([h, w, 0, 0, h, w], device=x.device, dtype=states.dtype).expand(len(x), -1)
        return unet(x, t, encoder_hidden_states=states,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample

    # attacks: a learnable token is one input embedding per encoder, side by side [K, E1 + E2] ---------------------
    def _width_1(self) -> int:
        return self.text_encoder.get_input_embeddings().weight.shape[1]

    def soft_init(self, unet: nn.Module, label: int | None = None) -> Tensor:
        words = "person" if label is None else display_name(self.identities[label])
        person = [tok(words, add_special_tokens=False).input_ids for tok in (self.tokenizer, self.tokenizer_2)]
        if label is None or len(person[0]) != len(person[1]):  # a name the two vocabularies split alike, else "person"
            person = [tok("person", add_special_tokens=False).input_ids[:1] for tok in (self.tokenizer, self.tokenizer_2)]
        return torch.cat([self.text_encoder.get_input_embeddings().weight[person[0]],
                          self.text_encoder_2.get_input_embeddings().weight[person[1]]], dim=-1).detach().clone()

    def soft_states(self, text: str, vectors: Tensor) -> Tensor:
        e1 = self._width_1()
        first = soft_encode(self.tokenizer, self.text_encoder, text, vectors[:, :e1], output_hidden_states=True)
        second = soft_encode(self.tokenizer_2, self.text_encoder_2, text, vectors[:, e1:], output_hidden_states=True)
        return self.pack(torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1), second.text_embeds)

    def as_stranger(self, unet: nn.Module, label: int) -> SDXLTextConditioning:
        identities = list(self.identities)
        identities[label] = STRANGER
        return SDXLTextConditioning((self.tokenizer, self.tokenizer_2), (self.text_encoder, self.text_encoder_2),
                                    identities, self.templates, self.anchor_prompt, self.vae, self.force_zeros)
