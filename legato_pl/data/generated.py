"""Data-free erasure (ESD / MACE style): the training photos are the frozen base model's own generations.

A user who has only a name can erase it: the forget and retain people are drawn by the base model
itself (its prompts for a text-to-image model, its classes for a class-conditional one) from fixed
seeds, cached on disk, and served exactly like photos (:class:`IdentityDataModule` batches).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import Tensor

from legato_pl.data.datamodule import IdentityDataModule, IdentityImages
from legato_pl.errors import LegatoInputError


class GeneratedIdentityDataModule(IdentityDataModule):
    """Forget/retain batches from the base model's generations (no photos needed).

    Args:
        base_model: the base model that draws the people (the one being unlearned).
        forget, retain: person names; ``retain`` is required (there is no folder to list people from).
        images_per_identity: generations per person (``heldout_fraction`` of them are held out).
        cache_dir: where generations are cached (a hash of the settings names the file).
        guidance_scale, num_inference_steps: the sampler's settings.
    """

    def __init__(self, base_model: str, forget: list[str] | str, retain: list[str] | None = None,
                 images_per_identity: int = 32, cache_dir: str = "runs/generated", guidance_scale: float = 3.0,
                 num_inference_steps: int = 25, **kwargs):
        super().__init__(forget=forget, retain=retain, **kwargs)
        self.base_model, self.cache_dir = base_model, Path(cache_dir)
        self.images_per_identity, self.guidance_scale = images_per_identity, guidance_scale
        self.num_inference_steps = num_inference_steps

    def prepare_data(self) -> None:
        """In a fit, Lightning calls this on one process: it draws the people and writes the cache (atomically);
        every process then reads it in ``setup``."""
        self._generations(self._names())

    def _names(self) -> list[str]:
        if not self.retain:
            raise LegatoInputError("data-free erasure needs retain names (people the model must keep drawing)")
        return sorted({*self.forget, *self.retain})

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            names = self._names()
            images = self._generations(names)
            n_held = round(self.images_per_identity * self.hparams.heldout_fraction)
            keep = self.images_per_identity - n_held
            self.data = IdentityImages.from_tensors({n: images[n][:keep] for n in names},
                                                    {n: images[n][keep:] for n in names})
        super().setup(stage)

    def _generations(self, names: list[str]) -> dict[str, Tensor]:
        from legato_pl.models.base import load_base_model
        from legato_pl.sampling import sample

        base = load_base_model(self.base_model)
        # the cache is named by what the images depend on: the model's weights (not its path) and the settings
        settings = {"base_model": base.content_fingerprint(), "names": names, "n": self.images_per_identity,
                    "size": self.image_size, "seed": self.hparams.seed, "guidance": self.guidance_scale,
                    "steps": self.num_inference_steps}
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        cache = self.cache_dir / f"generated_{key}.pt"
        if cache.is_file():
            return torch.load(cache)
        base.use_identities(names, f"base model {self.base_model}")  # a text model draws any name
        out = {}
        for name in names:
            labels = torch.full((self.images_per_identity,), base.identities.index(name))
            images = sample(base.unet.eval(), base.scheduler, labels, conditioning=base.conditioning,
                            guidance_scale=self.guidance_scale, num_inference_steps=self.num_inference_steps,
                            seed=self.hparams.seed + 100_000 * len(out))
            if images.shape[-1] != self.image_size:
                raise LegatoInputError(f"the base model draws {images.shape[-1]}px images; set image_size to it")
            out[name] = images
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
        torch.save(out, partial)
        os.replace(partial, cache)  # a reader sees the whole file or none
        return out
