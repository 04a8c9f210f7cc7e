"""Stable Diffusion XL: a name erased exactly as on SD 1.x, through the SDXL conditioning (two text encoders,
pooled embeddings, time ids); the artifact loads onto a plain StableDiffusionXLPipeline in half precision."""

from __future__ import annotations

import json

import pytest
import torch

from legato_pl.cli import run
from legato_pl.conditioning.sdxl import SDXLTextConditioning
from legato_pl.methods import load_method
from legato_pl.models import UnlearningModule, load_base_model
from legato_pl.models.text_to_image import build_text_to_image_xl
from legato_pl.sampling import sample

from conftest import tiny
from test_unlearning import _batch

UNET = {"sample_size": 8, "block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8,
        "attention_head_dim": 4, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "addition_time_embed_dim": 8}
TEXT = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
TEXT_2 = {"hidden_size": 24, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
          "projection_dim": 12}
VAE = {"block_out_channels": [8, 8], "down_block_types": ["DownEncoderBlock2D"] * 2,
       "up_block_types": ["UpDecoderBlock2D"] * 2, "latent_channels": 4, "norm_num_groups": 4, "sample_size": 16}


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sdxl")
    build_text_to_image_xl(UNET, TEXT, TEXT_2, VAE, num_train_timesteps=100).save_pretrained(str(path))
    return path


def test_sdxl_conditioning_packs_both_encoders_and_the_pooled_embedding(sdxl_dir, tmp_path):
    module = UnlearningModule(str(sdxl_dir), method=tiny())
    cond = module.conditioning
    assert isinstance(cond, SDXLTextConditioning)
    from legato_pl.data import IdentityDataModule

    dm = IdentityDataModule(forget="person_01", image_size=16, batch_size=4, num_synthetic_identities=4,
                            synthetic_images_per_identity=8)
    dm.setup("fit")
    module.bind_data(dm)
    e = cond.encode(module.unet, torch.tensor([0, 1]))
    assert e.shape == (2, 78, TEXT["hidden_size"] + TEXT_2["hidden_size"])
    assert torch.equal(e[:, -1, TEXT_2["projection_dim"]:], torch.zeros_like(e[:, -1, TEXT_2["projection_dim"]:]))
    assert torch.count_nonzero(cond.null(module.unet, 1)) == 0  # force_zeros_for_empty_prompt
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 60])
    with torch.no_grad(), module.method.teacher() as teacher:
        base_out = cond.predict(teacher, x, t, e)
    with torch.no_grad():
        assert torch.equal(cond.predict(module.unet, x, t, e), base_out)  # adapters start at the base exactly
        other = cond.predict(module.unet, x, t, torch.cat([e[:, :-1], e[:, -1:] * 0], dim=1))
    assert not torch.equal(other, base_out)  # the pooled row reaches the UNet (text_embeds)
    module.total_loss(module.compute_losses(_batch())).backward()
    assert {n for n, p in module.named_parameters() if p.grad is not None} <= {
        f"method.adapters.{n}" for n, _ in module.adapters.named_parameters()}
    images = sample(module.unet, module.scheduler, torch.tensor([1]), conditioning=cond, num_inference_steps=2)
    assert images.shape == (1, 3, 16, 16)
    # the attacks' learnable tokens: one input embedding per encoder, side by side
    vectors = cond.soft_init(module.unet).requires_grad_(True)
    cond.soft_condition(module.unet, vectors).sum().backward()
    assert vectors.grad is not None and vectors.shape == (1, cond.text_encoder.config.hidden_size
                                                          + cond.text_encoder_2.config.hidden_size)
    own = cond.soft_init(module.unet, 1)  # a person's own start: the name's tokens in both encoders
    torch.testing.assert_close(cond.soft_condition(module.unet, own),
                               cond.for_unet(module.unet, cond.encode_prompts([cond.prompt(1)])), rtol=0, atol=1e-5)


def test_cli_erases_a_name_from_sdxl_and_the_artifact_loads_on_a_half_precision_pipeline(sdxl_dir, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    cli = run(["fit", "--config", "configs/legato_t2i_lfw.yaml", "--data.init_args.root", "null",
               "--data.init_args.image_size", "16", "--data.init_args.batch_size", "4", "--trainer.max_steps", "2",
               "--trainer.logger.init_args.save_dir", str(tmp_path), "--model.init_args.base_model", str(sdxl_dir),
               "--model.init_args.output_dir", str(tmp_path / "adapters"),
               "--model.init_args.method.init_args.adapter.hidden", "8", "--data.init_args.forget", "person_01",
               "--data.init_args.num_synthetic_identities", "4", "--data.init_args.synthetic_images_per_identity", "8"])
    assert isinstance(cli.model.conditioning, SDXLTextConditioning)
    assert json.loads((tmp_path / "adapters" / "legato_method.json").read_text())["method"] == "legato"
    pipe = StableDiffusionXLPipeline.from_pretrained(str(sdxl_dir), torch_dtype=torch.float16)

    def draw() -> torch.Tensor:
        return pipe("a photo of person 01", num_inference_steps=2, height=16, width=16, output_type="pt",
                    generator=torch.Generator().manual_seed(0)).images

    plain = draw()
    method = load_method(pipe.unet, tmp_path / "adapters", strength=0.0)
    assert {p.dtype for p in method.parameters()} == {torch.float16}
    assert torch.equal(draw(), plain)  # strength 0 is the pipeline's own output
    method.strength = 1.0
    assert torch.isfinite(draw()).all()


def test_an_sdxl_refiner_is_refused_naming_what_is_supported(sdxl_dir, tmp_path):
    import shutil

    refiner = tmp_path / "refiner"
    shutil.copytree(sdxl_dir, refiner)
    index = json.loads((refiner / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionXLImg2ImgPipeline"
    (refiner / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="supported: DDPMPipeline .*StableDiffusionXLPipeline"):
        load_base_model(refiner)


def test_merge_round_trip_on_sdxl(sdxl_dir, tmp_path):
    """A LoRA artifact merged into an SDXL base: the whole pipeline is written and draws what base + artifact draws."""
    from test_text_to_image import merge_round_trip

    merge_round_trip(sdxl_dir, tmp_path, "StableDiffusionXLPipeline")
