"""Text-to-image bases (Stable Diffusion layout): prompts as identities, pixel and latent, same objective."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from legato_pl.conditioning import TextConditioning
from legato_pl.conditioning.tokenizer import offline_clip_tokenizer
from legato_pl.data import IdentityDataModule
from legato_pl.errors import LegatoInputError
from legato_pl.methods import load_method, read_model_card
from legato_pl.models import UnlearningModule, load_base_model
from legato_pl.models.text_to_image import build_text_to_image
from legato_pl.sampling import sample

from conftest import tiny
from test_unlearning import _batch

UNET = {"sample_size": 16, "block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8,
        "attention_head_dim": 4, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"]}
TEXT = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
VAE = {"block_out_channels": [8, 8], "down_block_types": ["DownEncoderBlock2D"] * 2,
       "up_block_types": ["UpDecoderBlock2D"] * 2, "latent_channels": 4, "norm_num_groups": 4, "sample_size": 16}


@pytest.fixture(scope="module", params=["pixel", "latent"])
def t2i_dir(request, tmp_path_factory):
    torch.manual_seed(0)
    latent = request.param == "latent"
    # latent: the Stable Diffusion layout; pixel: the prompt also pooled into the time embedding (diffusers' "text"
    # addition embedding), so adapters are checked on both kinds of text UNet
    unet = {**UNET, "sample_size": 8} if latent else {**UNET, "addition_embed_type": "text",
                                                        "addition_embed_type_num_heads": 4}
    pipe = build_text_to_image(unet, TEXT, VAE if latent else None, num_train_timesteps=100)
    path = tmp_path_factory.mktemp(request.param)
    pipe.save_pretrained(str(path))
    return path


def test_offline_tokenizer_is_clips():
    ids = offline_clip_tokenizer()("a photo of George W Bush").input_ids
    assert ids[:4] == [49406, 320, 1125, 539] and ids[-1] == 49407  # CLIP's own ids for <start> a photo of ... <end>


def test_text_to_image_base_unlearns_by_name(t2i_dir, tmp_path):
    module = UnlearningModule(str(t2i_dir), method=tiny(), prompt_templates=["a photo of {}", "{} smiling"])
    assert isinstance(module.conditioning, TextConditioning)
    dm = IdentityDataModule(forget="person_01", image_size=16, batch_size=4,
                                                   num_synthetic_identities=4, synthetic_images_per_identity=8)
    dm.setup("fit")
    module.bind_data(dm)
    assert module.identities == dm.class_names and module.conditioning.prompt(1, 1) == "person 01 smiling"
    cond = module.conditioning.encode(module.unet, torch.tensor([0, 1]))
    assert cond.shape == (2, 77, TEXT["hidden_size"])
    # the adapted model starts exactly at the base, for prompts as for classes
    x, t = torch.randn(2, module.unet.config.in_channels, module.unet.config.sample_size, module.unet.config.sample_size), \
        torch.tensor([3, 60])
    with torch.no_grad(), module.method.teacher() as teacher:
        base_out = module.conditioning.predict(teacher, x, t, cond)
    with torch.no_grad():
        assert torch.equal(module.conditioning.predict(module.unet, x, t, cond), base_out)
    losses = module.compute_losses(_batch())
    module.total_loss(losses).backward()
    assert all(p.grad is None for p in module.unet.parameters() if not p.requires_grad)
    assert {n for n, p in module.named_parameters() if p.grad is not None} <= {
        f"method.adapters.{n}" for n, _ in module.adapters.named_parameters()}
    opt = module.configure_optimizers()
    for _ in range(2):
        opt.step()
        opt.zero_grad()
        module.total_loss(module.compute_losses(_batch())).backward()
    # sampling by name decodes to images; the artifact reloads on a fresh pipeline's UNet
    images = sample(module.unet, module.scheduler, torch.tensor([1, 1]), conditioning=module.conditioning,
                    num_inference_steps=2)
    assert images.shape == (2, 3, 16, 16) and images.abs().max() <= 1
    module.method.save(tmp_path / "art", base_model=str(t2i_dir))
    fresh = load_base_model(t2i_dir)
    load_method(fresh.unet, tmp_path / "art")
    with torch.no_grad():
        torch.testing.assert_close(module.conditioning.predict(fresh.unet, x, t, cond),
                                   module.conditioning.predict(module.unet, x, t, cond))


@pytest.mark.parametrize("method", ["legato", "lora", "full"])
def test_one_fit_erases_several_names_from_a_text_to_image_base(t2i_dir, tmp_path, method):
    """forget: [names] on a text-to-image base, for every method: each name's prompts are forget rows, the
    others' are retain rows, a step trains only the method's parameters, the card lists every name."""
    module = UnlearningModule(str(t2i_dir), method=tiny(method))
    dm = IdentityDataModule(forget=["person_01", "person_03"], image_size=16, batch_size=4,
                            num_synthetic_identities=5, synthetic_images_per_identity=8)
    dm.setup("fit")
    module.bind_data(dm)
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    names = lambda labels: {module.identities[i] for i in module.label_map[labels].tolist()}  # noqa: E731
    assert names(batch["forget_labels"]) <= {"person_01", "person_03"}
    assert names(batch["retain_labels"]).isdisjoint({"person_01", "person_03"})
    assert names(torch.arange(len(dm.class_names))) == set(dm.class_names)  # every name has its prompt
    frozen = {n: p.detach().clone() for n, p in module.unet.named_parameters() if not p.requires_grad}
    opt = module.configure_optimizers()
    module.total_loss(module.compute_losses(batch)).backward()
    opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in module.unet.named_parameters() if n in frozen)
    module.method.save(tmp_path / "art", base_model=str(t2i_dir), forget=dm.forget)
    assert read_model_card(tmp_path / "art")["forget"] == ["person_01", "person_03"]


def test_text_to_image_bad_input(t2i_dir, tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        UnlearningModule(str(t2i_dir), method=tiny(), prompt_templates=["a photo"])
    with pytest.raises(ValueError, match="template list is empty"):
        load_base_model(t2i_dir, prompt_templates=[]).text  # noqa: B018  (an explicit empty list is an error)
    broken = tmp_path / "broken"
    shutil.copytree(t2i_dir, broken)
    if (broken / "vae").is_dir():  # a latent UNet without its VAE cannot see photos
        shutil.rmtree(broken / "vae")
        index = json.loads((broken / "model_index.json").read_text())
        index["vae"] = [None, None]
        (broken / "model_index.json").write_text(json.dumps(index))
        with pytest.raises(ValueError, match="no VAE"):
            load_base_model(broken)


def test_cli_pretrains_a_text_to_image_base_and_erases_a_name(tmp_path):
    """configs/pretrain_t2i_lfw.yaml and configs/legato_t2i_lfw.yaml, shrunk: SD layout out, adapters by name."""
    from legato_pl.cli import run

    small = ["--data.init_args.root", "null", "--data.init_args.image_size", "16", "--data.init_args.batch_size", "4",
             "--trainer.max_steps", "2", "--trainer.logger.init_args.save_dir", str(tmp_path)]
    pre = run(["fit", "--config", "configs/pretrain_t2i_lfw.yaml", *small, "--model.init_args.output_dir",
               str(tmp_path / "base"), "--model.init_args.unet", json.dumps(UNET), "--model.init_args.text_encoder",
               json.dumps(TEXT), "--model.init_args.train_text_encoder", "true", "--model.init_args.name_separation_steps",
               "5", "--data.init_args.num_synthetic_identities", "4", "--data.init_args.synthetic_images_per_identity", "8"])
    # train_text_encoder: the encoder's weights are optimised with the UNet's (the conditioning's freeze is undone)
    assert all(p.requires_grad for p in pre.model.text_encoder.parameters())
    assert {id(p) for p in pre.model.text_encoder.parameters()} <= {id(p) for p in pre.model.trainable_parameters()}
    assert json.loads((tmp_path / "base" / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    assert json.loads((tmp_path / "base" / "identities.json").read_text())[:2] == ["person_00", "person_01"]
    cli = run(["fit", "--config", "configs/legato_t2i_lfw.yaml", *small, "--model.init_args.base_model",
               str(tmp_path / "base"), "--model.init_args.output_dir", str(tmp_path / "adapters"),
               "--model.init_args.method.init_args.adapter.hidden", "8", "--data.init_args.forget", "person_01",
               "--data.init_args.num_synthetic_identities", "4", "--data.init_args.synthetic_images_per_identity", "8"])
    assert isinstance(cli.model.conditioning, TextConditioning)
    assert (tmp_path / "adapters" / "legato_method.json").is_file()


def test_sample_cli_takes_any_name_for_a_text_to_image_model(t2i_dir, tmp_path):
    from legato_pl.cli.sample import sample_grid

    grid = sample_grid(str(t2i_dir), ["Jane Doe", "John Roe"], per_identity=1, steps=2, strengths=[0.0])
    assert grid.shape == (1, 2, 3, 16, 16)


def test_the_conditioning_says_which_names_are_identities(t2i_dir, tiny_base_dir):
    """A text model draws any name (the conditioning takes it); a class model only its classes (one line)."""
    text = load_base_model(t2i_dir)
    text.use_identities(["Jane Doe"], "t2i")
    assert text.identities == text.text.identities == ["Jane Doe"] and text.conditioning.prompt(0) == "a photo of Jane Doe"
    classes = load_base_model(tiny_base_dir)
    with pytest.raises(LegatoInputError, match="unknown identity 'Jane Doe' in classes; available: person_00"):
        classes.use_identities(["Jane Doe"], "classes")


def test_data_free_erasure_trains_on_the_models_own_generations(t2i_dir, tmp_path, monkeypatch):
    from legato_pl.data import GeneratedIdentityDataModule

    def make():
        return GeneratedIdentityDataModule(str(t2i_dir), forget="Jane Doe", retain=["John Roe", "Ann Poe"],
                                           images_per_identity=4, image_size=16, batch_size=2, num_inference_steps=2,
                                           cache_dir=str(tmp_path / "cache"))

    dm = make()
    dm.setup("fit")
    assert dm.class_names == ["Ann Poe", "Jane Doe", "John Roe"] and len(list((tmp_path / "cache").iterdir())) == 1
    assert dm.data.train["Jane Doe"].shape == (3, 3, 16, 16) and len(dm.data.heldout["Jane Doe"]) == 1
    module = UnlearningModule(str(t2i_dir), method=tiny())
    module.bind_data(dm)
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert torch.isfinite(module.total_loss(module.compute_losses(batch)))
    # a second run reads the cache: the sampler is not called again
    import legato_pl.sampling

    monkeypatch.setattr(legato_pl.sampling, "sample", lambda *a, **k: pytest.fail("generated again"))
    again = make()
    again.setup("fit")
    assert torch.equal(again.data.train["Jane Doe"], dm.data.train["Jane Doe"])
    # the cache is the model's content, not its path: a copy elsewhere reads it (prepare_data, as a fit calls it)
    import shutil

    shutil.copytree(t2i_dir, tmp_path / "moved")
    moved = GeneratedIdentityDataModule(str(tmp_path / "moved"), forget="Jane Doe", retain=["John Roe", "Ann Poe"],
                                        images_per_identity=4, image_size=16, batch_size=2, num_inference_steps=2,
                                        cache_dir=str(tmp_path / "cache"))
    moved.prepare_data()
    assert len(list((tmp_path / "cache").iterdir())) == 1
    with pytest.raises(ValueError, match="needs retain names"):
        GeneratedIdentityDataModule(str(t2i_dir), forget="Jane Doe", image_size=16).setup("fit")


def test_embedding_condition_lets_the_field_see_the_prompt(t2i_dir):
    """On a text UNet the ``embedding`` condition is temb + the mean prompt state: the field can tell names apart."""
    from legato_pl.adapters import ODEAdapterConfig, attach_adapters

    from conftest import randomize_

    base = load_base_model(t2i_dir)
    unet = base.unet.eval()
    x = torch.randn(2, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    t, states = torch.tensor([3, 60]), torch.randn(2, 77, TEXT["hidden_size"])
    with torch.no_grad():
        reference = unet(x, t, encoder_hidden_states=states).sample
    adapters = attach_adapters(unet, ODEAdapterConfig(hidden=8, condition="embedding"))
    temb_width = unet.time_embedding.linear_2.out_features
    assert adapters.condition_dim == temb_width + TEXT["hidden_size"]
    with torch.no_grad():
        assert torch.equal(unet(x, t, encoder_hidden_states=states).sample, reference)  # exact at init
    seen = []

    def record(module, args, kwargs):
        seen.append(kwargs.get("condition", args[2] if len(args) > 2 else None))

    for adapter in adapters.adapters.values():
        adapter.register_forward_pre_hook(record, with_kwargs=True)
    randomize_(adapters, scale=0.1)
    with torch.no_grad():
        moved = unet(x, t, encoder_hidden_states=states).sample
    assert not torch.allclose(moved, reference)
    assert seen and all(torch.allclose(c[:, temb_width:], states.mean(1)) for c in seen)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_pipeline_runs_the_fp32_trained_artifact(t2i_dir, tmp_path, dtype):
    """A user's fp16 / bf16 SD pipeline (``from_pretrained(..., torch_dtype=...)``): training loads the base in fp32
    whatever its stored dtype; the artifact loads in the UNet's dtype; strength 0 is the half pipeline exactly,
    strength 1 matches the fp32 student within half precision; diffusers' own pipeline call runs with it."""
    from diffusers import StableDiffusionPipeline

    from conftest import randomize_

    half_dir = tmp_path / "half"
    no_vae = {} if (t2i_dir / "vae").is_dir() else {"vae": None}  # the pixel-space pipeline has none
    StableDiffusionPipeline.from_pretrained(str(t2i_dir), safety_checker=None, **no_vae).to(dtype).save_pretrained(
        str(half_dir))
    module = UnlearningModule(str(half_dir), method=tiny())
    assert {p.dtype for p in [*module.unet.parameters(), *module.conditioning.text_encoder.parameters()]} == {torch.float32}
    randomize_(module.adapters, scale=0.05)
    module.method.save(tmp_path / "art", base_model=str(half_dir))
    cond = module.conditioning.encode_prompts(["a photo of person 01", "person 00 smiling"])
    x = torch.randn(2, module.unet.config.in_channels, module.unet.config.sample_size, module.unet.config.sample_size)
    t = torch.tensor([3, 60])
    with torch.no_grad():
        student = module.conditioning.predict(module.unet, x, t, cond)

    pipe = StableDiffusionPipeline.from_pretrained(str(half_dir), torch_dtype=dtype, safety_checker=None, **no_vae)
    with torch.no_grad():
        base_half = pipe.unet(x.to(dtype), t, encoder_hidden_states=cond.to(dtype)).sample
    method = load_method(pipe.unet, tmp_path / "art", strength=0.0)
    assert {p.dtype for p in method.trainable_parameters()} == {dtype}
    with torch.no_grad():
        assert torch.equal(pipe.unet(x.to(dtype), t, encoder_hidden_states=cond.to(dtype)).sample, base_half)
        method.strength = 1.0
        adapted = pipe.unet(x.to(dtype), t, encoder_hidden_states=cond.to(dtype)).sample
    assert adapted.dtype == dtype and not torch.equal(adapted, base_half)
    # within half precision of the fp32 student, and much closer to it than the base is
    error, shift = (adapted.float() - student).abs().mean(), (base_half.float() - student).abs().mean()
    assert error < 0.2 * shift, (error, shift)
    latent = pipe.vae is not None
    out = pipe(["a photo of person 01"], num_inference_steps=2, height=16, width=16,
               output_type="pt" if latent else "latent").images
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_soft_tokens_reproduce_the_prompt_and_carry_gradients(t2i_dir):
    """The attacks' learnable tokens: fed the name's own token embeddings they give the prompt's states exactly."""
    text = load_base_model(t2i_dir).text
    ids = text.tokenizer("Jane Doe", add_special_tokens=False).input_ids
    own = text.text_encoder.get_input_embeddings().weight[ids].detach()
    torch.testing.assert_close(text.soft_states("a photo of <*> <*>", own), text.encode_prompts(["a photo of Jane Doe"]),
                               rtol=0, atol=1e-6)
    vectors = text.soft_init(None).requires_grad_(True)
    text.soft_condition(text.text_encoder, vectors).square().sum().backward()
    assert vectors.grad.abs().sum() > 0 and all(p.grad is None for p in text.text_encoder.parameters())
    with pytest.raises(ValueError, match="for 1 vectors"):
        text.soft_states("<*> and <*>", own[:1])
    # a person's own start (the adversarial objective's): the name's tokens, which give that person's prompt
    text.use_identities(["Jane_Doe", "Wilhelmina_Roe"], "the test")
    label = 1
    start = text.soft_init(None, label)
    name = text.identities[label].replace("_", " ")
    assert len(start) == len(text.tokenizer(name, add_special_tokens=False).input_ids)
    torch.testing.assert_close(text.soft_condition(text.text_encoder, start), text.encode_prompts([text.prompt(label)]),
                               rtol=0, atol=1e-6)


def test_text_model_audit_runs_every_attack_and_the_prompt_attack_optimises(t2i_dir, tmp_path):
    """The audit on a text-to-image base (pixel and latent): condition inversion on a token, membership inference,
    relearning with a never-seen name as the reference, and the adversarial prefix search, whose loss falls."""
    from legato_pl.audit import AuditSettings, IdentityJudge, prompt_attack, run_audit
    from legato_pl.data import IdentityImages

    from conftest import pixel_encoder, randomize_

    base_dir = tmp_path / "base"
    shutil.copytree(t2i_dir, base_dir)
    names = [f"person_{i:02d}" for i in range(4)]
    (base_dir / "identities.json").write_text(json.dumps(names))
    module = UnlearningModule(str(base_dir), method=tiny())
    randomize_(module.adapters, scale=0.05)
    module.method.save(tmp_path / "art", base_model=str(base_dir))
    templates = ("a photo of {}", "{} smiling")
    settings = AuditSettings(samples=2, sampling_steps=2, inversion_steps=3, relearn_k=(2,), relearn_unrelated=2,
                             relearn_steps=1, relearn_eval_every=1, prompt_attack_tokens=2, prompt_attack_steps=2,
                             prompt_templates=templates)
    result = run_audit(str(base_dir), str(tmp_path / "art"), "person_01", None, pixel_encoder, settings, tmp_path / "audit")
    assert set(result.prompt_attack["per_template"]) == set(templates)
    assert {"acc_base", "acc_unlearned", "steps"} <= set(result.condition_inversion)
    assert set(result.relearning) == {"method k=2", "method unrelated", "reference: new person, lora k=2"}
    assert 0 <= result.membership_inference["auc_after"] <= 1
    assert "adversarial prompt" in (tmp_path / "audit" / "audit.md").read_text()

    # the search itself: a longer run brings the unlearned prediction toward the base's
    base = load_base_model(base_dir, prompt_templates=["a photo of {}"])
    method = load_method(base.unet, tmp_path / "art")
    data = IdentityImages(None, 16, 0.25, identities=names, num_synthetic_identities=4, synthetic_images_per_identity=8)
    judge = IdentityJudge(pixel_encoder, {i: data.heldout[n] for i, n in enumerate(names)}, 16)
    attack = prompt_attack(base.unet, base.scheduler, method, base.text, data.train["person_01"], 1, judge, tokens=2,
                           steps=30, lr=5e-2, samples=2, sampling={"num_inference_steps": 2})
    r = attack.per_template["a photo of {}"]
    assert r["gap_attacked"] < r["gap_initial_prefix"] and method.strength == 1.0


def test_name_separation_gives_each_name_its_own_direction():
    """A random-init text encoder's states are mostly position and template; after separate_names the
    name dominates the mean state, also for a template it never saw."""
    from legato_pl.models.name_separation import prompt_features, separate_names

    torch.manual_seed(0)
    pipe = build_text_to_image(UNET, TEXT)
    names = ["George W Bush", "Tony Blair", "Serena Williams", "Colin Powell", "Gloria Macapagal Arroyo"]
    train, unseen = ["a photo of {}", "{} smiling", "a portrait of {}"], ["an image of {}"]
    text = TextConditioning(pipe.tokenizer, pipe.text_encoder, names, train)
    labels = torch.arange(len(names)).repeat(len(train))  # template-major: all names in the first template, ...

    def share(templates):  # between-name energy / total energy of the mean states
        ids = text.token_ids([t.format(n) for t in templates for n in names])
        with torch.no_grad():
            f = prompt_features(pipe.text_encoder, ids).view(len(templates), len(names), -1).mean(0)
        return float(((f - f.mean(0)) ** 2).sum() / (f ** 2).sum())

    before, before_unseen = share(train), share(unseen)
    losses = separate_names(pipe.text_encoder, text.token_ids([t.format(n) for t in train for n in names]), labels,
                            steps=60)
    assert not any(p.requires_grad for p in pipe.text_encoder.parameters())  # left frozen, as it was given
    assert losses[-1] < 0.2 * losses[0]
    assert share(train) > 0.5 > before
    assert share(unseen) > before_unseen + 0.3


def test_a_v_prediction_base_unlearns_and_strength_zero_stays_exact(tmp_path):
    """SD 2.x style: the scheduler predicts v. The objective compares teacher and student outputs in the model's own
    parameterisation, the sampler reads prediction_type: the forget term falls and strength 0 is the base."""
    from diffusers import DDPMScheduler

    torch.manual_seed(0)
    pipe = build_text_to_image({**UNET, "sample_size": 8}, TEXT, VAE, num_train_timesteps=100)
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    pipe.save_pretrained(str(tmp_path / "v"))
    module = UnlearningModule(str(tmp_path / "v"), method=tiny(), forget_target="negative", eta=2.0,
                              w_retain=0.0, w_trajectory=0.0, w_adjacency=0.0)
    assert module.scheduler.config.prediction_type == "v_prediction"
    dm = IdentityDataModule(forget="person_01", image_size=16, batch_size=4, num_synthetic_identities=4,
                            synthetic_images_per_identity=8)
    dm.setup("fit")
    module.bind_data(dm)
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    opt = torch.optim.Adam(module.method.trainable_parameters(), lr=1e-2)
    values = []
    for _ in range(10):
        losses = module.compute_losses(batch, noise_step=0)  # the same draws: a deterministic objective
        values.append(losses["forget"].item())
        opt.zero_grad()
        module.total_loss(losses).backward()
        opt.step()
    assert values[-1] < 0.7 * values[0], values
    base = load_base_model(tmp_path / "v")
    base.use_identities(dm.class_names, "the test")  # a text model draws whoever is named
    labels = torch.tensor([1, 2])
    with module.method.at_strength(0.0):
        at_zero = sample(module.unet, module.scheduler, labels, conditioning=module.conditioning, num_inference_steps=2)
    assert torch.equal(at_zero, sample(base.unet, base.scheduler, labels, conditioning=base.conditioning,
                                       num_inference_steps=2))


def merge_round_trip(base_dir, tmp_path, pipeline: str) -> None:
    """A trained-looking LoRA artifact merged into the text-to-image base in ``base_dir``: ``DiffusionPipeline``
    loads the written ``pipeline`` (absent parts as None) and it draws what base + artifact draws."""
    from legato_pl.cli.merge import merge_artifact
    from legato_pl.models.text_to_image import load_text_to_image

    module = UnlearningModule(str(base_dir), method=tiny("lora"))
    for p in module.method.trainable_parameters():
        torch.nn.init.normal_(p, std=0.1)  # B is zero at init
    module.method.save(tmp_path / "lora", base_model=str(base_dir))
    merge_artifact(str(base_dir), str(tmp_path / "lora"), tmp_path / "merged")

    def draw(pipe) -> torch.Tensor:  # the denoised UNet input (a pixel-space toy has no VAE to decode with)
        size = pipe.unet.config.sample_size * (pipe.vae_scale_factor if pipe.vae is not None else 1)
        return pipe("a photo of person 01", num_inference_steps=2, height=size, width=size, output_type="latent",
                    generator=torch.Generator().manual_seed(0)).images

    merged, _ = load_text_to_image(tmp_path / "merged")
    assert type(merged).__name__ == pipeline
    base, _ = load_text_to_image(base_dir)
    plain = draw(base)
    load_method(base.unet, tmp_path / "lora")
    expected = draw(base)
    assert not torch.allclose(expected, plain, atol=1e-4)
    torch.testing.assert_close(draw(merged), expected, rtol=1e-4, atol=1e-4)


def test_merge_writes_the_whole_pipeline_and_it_draws_what_base_plus_artifact_draws(t2i_dir, tmp_path):
    """merge on an SD-layout base: text encoder, tokenizer, VAE and scheduler kept; same images as base + artifact."""
    merge_round_trip(t2i_dir, tmp_path, "StableDiffusionPipeline")


def test_audit_runs_on_an_sd_directory_without_identities_json(t2i_dir, tmp_path):
    """A real SD checkpoint has no identities.json: the person is a name, the judge's photos a folder (here the
    embedded synthetic people)."""
    from legato_pl.audit import AuditSettings, run_audit

    from conftest import pixel_encoder

    assert not (t2i_dir / "identities.json").exists()
    module = UnlearningModule(str(t2i_dir), method=tiny())
    module.method.save(tmp_path / "art", base_model=str(t2i_dir))
    settings = AuditSettings(samples=2, sampling_steps=2, inversion_steps=1, relearn_k=(1,), relearn_unrelated=0,
                             relearn_steps=1, relearn_eval_every=1, prompt_attack_steps=0)
    result = run_audit(str(t2i_dir), str(tmp_path / "art"), "person_01", None, pixel_encoder, settings)
    assert {"acc_base", "acc_unlearned"} <= set(result.plain) and "auc_after" in result.membership_inference


def test_a_name_that_tokenizes_to_nothing_is_refused(t2i_dir):
    base = load_base_model(t2i_dir)
    with pytest.raises(ValueError, match="tokenizes to nothing"):
        base.use_identities(["Jane Doe", " _ "], "the data")
    base.use_identities(["Jane Doe"], "the data")


def test_untrained_condition_of_a_text_model_names_a_made_up_person(t2i_dir):
    """A text model's fresh condition is a prompt naming a seeded made-up person (the same per label, another per
    label, never a name it knows); the untrained target and path train on it like the class rows."""
    from legato_pl.conditioning.text import display_name, stranger_name

    from test_unlearning import _bound

    module = _bound(UnlearningModule(str(t2i_dir), method=tiny(), forget_target="negative", w_untrained_path=1.0,
                                     untrained_path_samples=2))
    cond = module.conditioning
    names = [stranger_name(i) for i in range(40)]
    assert len(set(names)) == 40 and set(names).isdisjoint(map(display_name, cond.identities))
    drawn = cond.untrained(module.unet, torch.tensor([1, 1, 2]))
    assert drawn.shape == cond.encode(module.unet, torch.tensor([1, 2, 3])).shape
    assert torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[0], drawn[2])
    assert torch.equal(drawn[0], cond.encode_prompts([cond.templates[0].format(stranger_name(1))])[0])
    terms = module.compute_losses(_batch(), noise_step=7)
    assert terms["untrained_path"] > 0 and module.untrained_bank().shape[:2] == (len(module.forget_classes), 2)
    target = UnlearningModule(str(t2i_dir), method=tiny(), forget_target="untrained", w_adjacency=0.0)
    assert _bound(target).compute_losses(_batch(), noise_step=7)["forget"] > 0
