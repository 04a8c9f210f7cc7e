"""The audit attacks can succeed and can fail: each is checked on a tiny base that really draws its people."""

from __future__ import annotations

import json

import pytest
import torch

from legato_pl.audit import IdentityJudge, auc, denoising_errors, invert_condition, membership_inference, relearn, tpr_at_fpr
from legato_pl.data import IdentityImages
from legato_pl.methods import LoRA, load_method, read_model_card
from legato_pl.models import load_base_model
from legato_pl.sampling import sample

from conftest import TINY_IDENTITIES, pixel_encoder, run_legato

FORGET = 1  # person_01: a random condition rarely draws it on the drawing base
SAMPLING = {"guidance_scale": 3.0, "num_inference_steps": 10}


@pytest.fixture(scope="module")
def world(drawing_base_dir):
    data = IdentityImages(None, 16, 0.25, identities=TINY_IDENTITIES, num_synthetic_identities=4,
                          synthetic_images_per_identity=16)
    judge = IdentityJudge(pixel_encoder, {i: data.heldout[n] for i, n in enumerate(data.names)}, 16)
    return load_base_model(drawing_base_dir), data, judge


def test_the_judge_and_the_base_agree_on_who_is_drawn(world):
    base, data, judge = world
    assert judge.accuracy(data.heldout["person_01"], FORGET) == 1.0
    drawn = sample(base.unet, base.scheduler, torch.full((8,), FORGET), null_class=base.null_class, **SAMPLING)
    assert judge.accuracy(drawn, FORGET) >= 0.75


def test_condition_inversion_draws_the_person_a_random_condition_does_not(world):
    base, data, judge = world
    table = base.unet.class_embedding.weight.detach().clone()
    before = {n: p.clone() for n, p in base.unet.state_dict().items()}
    found = invert_condition(base.unet, base.scheduler, data.train["person_01"], table[base.null_class], steps=150,
                             lr=5e-2)
    assert found.losses[-1] < found.losses[0]
    assert all(torch.equal(v, before[k]) for k, v in base.unet.state_dict().items())  # only the condition moved
    labels = torch.zeros(8, dtype=torch.long)
    inverted = sample(base.unet, base.scheduler, labels, null_class=base.null_class, embeddings=found.embedding.expand(8, -1),
                      **SAMPLING)
    random = sample(base.unet, base.scheduler, labels, null_class=base.null_class,
                    embeddings=torch.randn(8, table.shape[1], generator=torch.Generator().manual_seed(0)), **SAMPLING)
    assert judge.accuracy(inverted, FORGET) >= 0.75 > judge.accuracy(random, FORGET) + 0.25


def test_relearning_brings_back_a_person_that_was_removed(world):
    """'Forgotten' = person_01's embedding row replaced by the null class's: gone at step 0, back after LoRA steps."""
    base, data, judge = world
    forgotten = _copy(base.unet)
    with torch.no_grad():
        forgotten.class_embedding.weight[FORGET] = forgotten.class_embedding.weight[base.null_class]
    method = LoRA(forgotten, rank=4)
    own = {n: p.clone() for n, p in forgotten.named_parameters() if "lora_" not in n}
    photos = data.train["person_01"][:8]
    result = relearn(forgotten, base.scheduler, method, photos, torch.full((8,), FORGET), judge, FORGET, target=0.5,
                     conditioning=base.conditioning, max_steps=120, eval_every=30, lr=1e-2, eval_samples=8, sampling=SAMPLING)
    assert result.curve[0][1] < 0.5  # removed before the attack
    assert result.steps_to_target is not None and result.steps_to_target > 0, result.curve
    # relearning trained the method's parameters only: the UNet's own weights are untouched
    assert all(torch.equal(p, own[n]) for n, p in forgotten.named_parameters() if "lora_" not in n)


def test_relearning_lora_starts_from_its_seed_not_the_process_rng(world):
    """The attacker's fresh LoRA is the same for the same seed whatever ran before (a benchmark measuring several
    models in one process gets the same relearning curve for a model as a process measuring it alone)."""
    from legato_pl.audit.relearning import _trainable

    base = world[0]
    inits = []
    for seed, noise in ((0, 1), (0, 2), (1, 1)):
        unet = _copy(base.unet)
        torch.manual_seed(noise)
        torch.rand(7)  # whatever the process drew before
        inits.append(torch.cat([p.detach().flatten() for p in _trainable(unet, torch.nn.Module(), "lora", 2, seed)]))
        after = torch.rand(1)
        torch.manual_seed(noise)
        torch.rand(7)
        assert torch.equal(after, torch.rand(1))  # and the process's RNG is left where it was
    assert torch.equal(inits[0], inits[1]) and not torch.equal(inits[0], inits[2])


def test_relearning_lora_on_a_lora_artifact_keeps_the_artifacts_lora_on(world):
    """The attacker's fresh LoRA is added to a LoRA artifact, not swapped for it: at step 0 the model is still the
    unlearned one (peft makes an injected adapter the only active one, which relearned from the base)."""
    from legato_pl.audit.relearning import _trainable

    unet = _copy(world[0].unet)
    method = LoRA(unet)
    with torch.no_grad():
        for p in method.trainable_parameters():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    x, t, y = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([5, 50]), torch.tensor([0, 1])
    with torch.no_grad():
        with method.teacher():
            base = unet(x, t, class_labels=y).sample
        unlearned = unet(x, t, class_labels=y).sample
        _trainable(unet, method, "lora", 2)
        attacked = unet(x, t, class_labels=y).sample
    assert not torch.allclose(unlearned, base, atol=1e-3)
    torch.testing.assert_close(attacked, unlearned)


def test_membership_inference_statistics():
    members, nonmembers = torch.tensor([3.0, 4.0, 5.0]), torch.tensor([0.0, 1.0, 2.0])
    assert auc(members, nonmembers) == 1.0 and auc(nonmembers, members) == 0.0
    assert auc(torch.ones(4), torch.ones(5)) == 0.5
    assert tpr_at_fpr(members, nonmembers) == 1.0  # 3 non-members: threshold = their maximum
    assert tpr_at_fpr(torch.tensor([1.0, 3.0]), nonmembers) == 0.5
    result = membership_inference(torch.tensor([[0.1], [0.2]]), torch.tensor([[0.3], [0.4], [0.5]]))
    assert result == {"auc": 1.0, "tpr_at_1pct": 1.0, "members": 2, "nonmembers": 3}  # lower error = member


def test_membership_inference_sees_photos_a_model_was_fitted_to(world):
    """A model fine-tuned on 4 photos denoises them better than 4 unseen ones: AUC 1 where the base has ~0.5."""
    base, data, _ = world
    seen, unseen = data.train["person_01"][:4], data.heldout["person_01"][:4]
    fitted = _copy(base.unet).train()
    optimizer = torch.optim.Adam(fitted.parameters(), lr=1e-3)
    for _ in range(60):
        noise, t = torch.randn(4, 3, 16, 16), torch.randint(0, 100, (4,))
        pred = fitted(base.scheduler.add_noise(seen, noise, t), t, class_labels=torch.full((4,), FORGET)).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = membership_inference(denoising_errors(fitted.eval(), base.scheduler, seen, FORGET),
                                 denoising_errors(fitted, base.scheduler, unseen, FORGET))
    assert after["auc"] == 1.0


def test_merge_is_exact_for_lora_and_full_and_refused_for_ode_adapters(world, tmp_path):
    base, _, _ = world
    from legato_pl.methods import build_method

    from conftest import tiny

    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([5, 50]), torch.tensor([1, 2])
    for name in ("lora", "full"):
        unet = _copy(base.unet)
        method = build_method(name, unet)
        with torch.no_grad():
            for p in method.trainable_parameters():
                p.add_(torch.randn_like(p) * 0.05)
        method.strength = 0.5
        with torch.no_grad():
            expected = unet(x, t, class_labels=y).sample
            merged = method.merge()
            assert not any("lora_" in n for n, _ in merged.named_parameters())
            fresh = _copy(base.unet)
            fresh.load_state_dict(merged.state_dict())  # a plain UNet of the base's class holds it all
            torch.testing.assert_close(fresh(x, t, class_labels=y).sample, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="cannot be merged"):
        build_method(tiny(), _copy(base.unet)).merge()


def _copy(unet):
    clone = type(unet).from_config(unet.config)
    clone.load_state_dict(unet.state_dict())
    return clone.eval()


def test_audit_and_merge_cli_end_to_end(drawing_base_dir, tmp_path):
    """``python -m legato_pl audit`` on a LoRA artifact writes its report; ``merge`` writes a plain pipeline."""
    unet = load_base_model(drawing_base_dir).unet
    method = LoRA(unet, rank=2)
    with torch.no_grad():
        for p in method.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    method.save(tmp_path / "lora", base_model=str(drawing_base_dir))
    proc = run_legato(["audit", "--base_model", str(drawing_base_dir), "--artifact", str(tmp_path / "lora"),
                       "--forget", "person_01", "--out", str(tmp_path / "audit"), "--samples", "4",
                       "--sampling_steps", "3", "--inversion_steps", "5", "--relearn_k", "2", "--relearn_unrelated", "4",
                       "--relearn_steps", "2", "--relearn_eval_every", "1"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["method"] == "lora"
    assert set(report["relearning"]) == {"method k=2", "method unrelated", "reference: new person, lora k=2"}
    assert {"auc_before", "auc_after", "members", "nonmembers"} <= set(report["membership_inference"])
    assert "condition inversion:" in proc.stdout and (tmp_path / "audit" / "audit_grid.png").is_file()
    card = read_model_card(tmp_path / "lora")  # the audit's verdicts are now in the artifact's model card
    assert card["method"] == "lora" and card["audit"]["forget"] == "person_01"
    assert card["audit"]["verdicts"] == [line[2:] for line in proc.stdout.splitlines() if line.startswith("- ")]
    assert "## Audit (person_01)" in (tmp_path / "lora" / "README.md").read_text()
    proc = run_legato(["merge", "--base_model", str(drawing_base_dir), "--artifact", str(tmp_path / "lora"),
                       "--out", str(tmp_path / "merged")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    merged, reference = load_base_model(tmp_path / "merged").unet, load_base_model(drawing_base_dir).unet
    load_method(reference, tmp_path / "lora")
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([5, 50]), torch.tensor([1, 2])
    with torch.no_grad():
        torch.testing.assert_close(merged(x, t, class_labels=y).sample, reference(x, t, class_labels=y).sample,
                                   rtol=1e-4, atol=1e-5)


def test_audits_of_several_artifacts_share_the_base_side_once(drawing_base_dir, tmp_path, monkeypatch):
    """With ``base_cache`` the base's attacks run once: a second artifact's audit reuses them unchanged, and a
    change of settings recomputes them."""
    import legato_pl.audit.report as report
    from legato_pl.audit import AuditSettings, run_audit

    calls = {"invert": 0, "relearn": 0}

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(report, "invert_condition", counting("invert", report.invert_condition))
    monkeypatch.setattr(report, "relearn", counting("relearn", report.relearn))
    artifacts = []
    for seed in (0, 1):
        unet = load_base_model(drawing_base_dir).unet
        torch.manual_seed(seed)
        method = LoRA(unet, rank=2)
        with torch.no_grad():
            for p in method.trainable_parameters():
                p.add_(torch.randn_like(p) * 0.05)
        method.save(tmp_path / f"lora{seed}", base_model=str(drawing_base_dir))
        artifacts.append(str(tmp_path / f"lora{seed}"))
    settings = AuditSettings(samples=4, sampling_steps=3, inversion_steps=3, relearn_k=(2,), relearn_unrelated=4,
                             relearn_steps=2, relearn_eval_every=1)
    audit = lambda artifact, s, cache: run_audit(str(drawing_base_dir), artifact, "person_01", None,  # noqa: E731
                                                 pixel_encoder, s, base_cache=cache)
    first = audit(artifacts[0], settings, tmp_path / "base")
    assert calls == {"invert": 2, "relearn": 3}  # base + unlearned; k=2, unrelated, reference
    second = audit(artifacts[1], settings, tmp_path / "base")
    assert calls == {"invert": 3, "relearn": 5}  # only the unlearned side ran again
    assert second.plain["acc_base"] == first.plain["acc_base"]
    for key in ("acc_base", "final_loss_base"):
        assert second.condition_inversion[key] == first.condition_inversion[key]
    assert second.membership_inference["auc_before"] == first.membership_inference["auc_before"]
    assert list(second.relearning) == list(first.relearning)  # the reference stays last
    ref = "reference: new person, lora k=2"
    assert second.relearning[ref] == first.relearning[ref]
    uncached = audit(artifacts[1], settings, None)  # the cache changes nothing but the time
    assert uncached.condition_inversion == second.condition_inversion
    assert uncached.membership_inference == second.membership_inference
    assert uncached.relearning == second.relearning
    audit(artifacts[1], AuditSettings(**{**settings.__dict__, "inversion_steps": 4}), tmp_path / "base")
    assert calls["invert"] == 7  # 3 + 2 uncached + 2 with new settings: the old base side was not reused
