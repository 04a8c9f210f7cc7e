"""What a condition is for one kind of model, in one place.

The objective, the sampler, the callbacks and the audit speak of *identities* (indices into a name
list) and *condition tensors*; a :class:`Conditioning` turns the first into the second for its kind
of model and calls the UNet with them. Class-conditional models (``ClassConditioning``: a class
index becomes a row of the UNet's class-embedding table) and text-conditional ones
(``TextConditioning``: a name becomes the text encoder's states of a prompt that names the person)
then share one ``UnlearningModule``. Adding a kind of model is one new file here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from legato_pl.errors import LegatoInputError


def check_names(wanted: list[str], available: list[str], where: str) -> None:
    """Stop with one line naming the first of ``wanted`` that is not in ``available``."""
    missing = [n for n in wanted if n not in set(available)]
    if missing:
        hint = ", ".join(available[:8]) + (", ..." if len(available) > 8 else "")
        raise LegatoInputError(f"unknown identity {missing[0]!r} in {where}; available: {hint}")


class Conditioning(ABC):
    """Identities -> condition tensors, the null and anchor conditions, and the UNet call."""

    identities: list[str]
    any_name: bool = False  # every name is an identity (a text model draws whoever its prompt names)

    def use_identities(self, names: list[str], where: str) -> None:
        """Make ``names`` drawable: a fixed vocabulary checks them (one line naming an unknown one, ``where``
        says whose list), an open one (text models) takes them as its identities."""
        if self.any_name:
            self.identities = list(names)
        else:
            check_names(names, self.identities, where)

    @abstractmethod
    def encode(self, unet: nn.Module, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Condition tensors for identity indices ``labels`` (``unet``: the network whose own tables to
        read, so a method that trains them, like the full fine-tune, sees its own; ``generator``: for
        choices such as a prompt template per row)."""

    @abstractmethod
    def null(self, unet: nn.Module, n: int) -> Tensor:
        """``n`` copies of the unconditional condition (classifier-free guidance's ∅)."""

    def anchor(self, unet: nn.Module, n: int) -> Tensor:
        """``n`` copies of what a forgotten person should become under the ``anchor`` target (default ∅)."""
        return self.null(unet, n)

    def untrained(self, unet: nn.Module, labels: Tensor) -> Tensor:
        """Conditions for ``labels`` as a model never trained on them would hold them (the ``untrained`` forget
        target and path: what a model retrained without the person does with their condition)."""
        raise LegatoInputError(f"forget_target 'untrained' and w_untrained_path are not defined for a "
                               f"{type(self).__name__}")

    @abstractmethod
    def predict(self, unet: nn.Module, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """The UNet's output for inputs ``x`` at timesteps ``t`` under conditions ``cond``."""

    # attacks (legato_pl.audit) -------------------------------------------------------------------
    @abstractmethod
    def soft_init(self, unet: nn.Module, label: int | None = None) -> Tensor:
        """Start of a condition inversion: the learnable input that stands for "a person, nobody in particular", or
        for identity ``label`` (its own input: an adversary searching near the name)."""

    @abstractmethod
    def soft_condition(self, unet: nn.Module, vectors: Tensor) -> Tensor:
        """The ``[1, ...]`` condition made from learnable ``vectors`` (differentiable in them)."""

    @abstractmethod
    def as_stranger(self, unet: nn.Module, label: int) -> Conditioning:
        """A conditioning under which ``label`` names someone ``unet`` never learned (may edit ``unet``: pass a
        copy): the reference for how fast a person is learned from scratch."""

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Conditioning:
        """Move what the conditioning owns (text encoders, VAE) to ``device`` and / or ``dtype``."""
        return self

    # latent models --------------------------------------------------------------------------------
    vae: nn.Module | None = None

    @property
    def latent_factor(self) -> int:
        """How much smaller than the photos the UNet's input is (1 in pixel space)."""
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def to_latents(self, images: Tensor) -> Tensor:
        """Images in [-1, 1] -> what the UNet denoises (identity for pixel-space models)."""
        return images

    def to_images(self, latents: Tensor) -> Tensor:
        """The inverse of :meth:`to_latents` (images in [-1, 1])."""
        return latents
