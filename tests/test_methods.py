"""Every unlearning method fits on a tiny setup and changes only the parameters it should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from legato_pl.methods import load_method
from legato_pl.models import UnlearningModule, load_base_model

from conftest import tiny
from test_unlearning import _batch


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _train(module: UnlearningModule, steps: int) -> None:
    opt = module.configure_optimizers()
    for _ in range(steps):
        loss = module.total_loss(module.compute_losses(_batch()))
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("method", ["legato", "residual", "lora", "full"])
def test_method_trains_only_its_parameters(tiny_base_dir, tmp_path, method):
    module = UnlearningModule(str(tiny_base_dir), method=tiny(method), lr=1e-2,
                              output_dir=str(tmp_path / "out"))
    base = load_base_model(tiny_base_dir).unet.state_dict()
    before = _snapshot(module.unet)
    trainable = {id(p) for p in module.method.trainable_parameters()}
    _train(module, steps=2)
    after = _snapshot(module.unet)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    names = {id(p): n for n, p in module.unet.named_parameters()}
    if method in ("legato", "residual"):
        assert not changed  # the UNet is untouched; only the adapters moved
        assert all(id(p) in trainable for p in module.adapters.parameters())
        assert {len(s) for s in module.adapters.trajectory_states().values()} == {2 if method == "residual" else 5}
    elif method == "lora":
        assert changed and all("lora_" in k for k in changed)
        assert all("lora_" in names[i] for i in trainable)
    else:
        assert changed and any("class_embedding" not in k for k in changed)
        assert "class_embedding.weight" in changed  # GUIDE-style: the full model trains its class embedding too
        teacher = module.method.frozen_teacher.state_dict()
        assert all(torch.equal(teacher[k], base[k]) for k in base)  # the teacher copy stays the base
    module.method.save(tmp_path / "out", base_model=str(tiny_base_dir))
    meta = json.loads((tmp_path / "out" / "legato_method.json").read_text())
    assert meta["method"] == method and meta["base_model"]["path"] == str(tiny_base_dir)
    # the saved artifact, whatever the method, reproduces the trained student on a fresh base UNet
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([5, 50]), torch.tensor([1, 2])
    fresh_unet = load_base_model(tiny_base_dir).unet
    loaded = load_method(fresh_unet, tmp_path / "out")
    assert type(loaded) is type(module.method) and not any(p.requires_grad for p in fresh_unet.parameters())
    with torch.no_grad():
        trained = module.unet(x, t, class_labels=y).sample
        torch.testing.assert_close(fresh_unet(x, t, class_labels=y).sample, trained)
        # the strength knob of every method: 0 is the base model exactly, 0.5 lies between, 1 is back
        base_out = load_base_model(tiny_base_dir).unet(x, t, class_labels=y).sample
        at = {}
        for s in (0.0, 0.5, 1.0):
            loaded.strength = s
            at[s] = fresh_unet(x, t, class_labels=y).sample
        with module.method.at_strength(0.0):  # the same knob on the training module, restored after
            assert torch.equal(module.unet(x, t, class_labels=y).sample, base_out)
        assert torch.equal(module.unet(x, t, class_labels=y).sample, trained)
    assert torch.equal(at[0.0], base_out)
    assert 0 < (at[0.5] - base_out).abs().mean() < (trained - base_out).abs().mean()
    torch.testing.assert_close(at[1.0], trained)


def test_unknown_method_is_refused(tiny_base_dir):
    with pytest.raises(ValueError, match="method must be one of"):
        UnlearningModule(str(tiny_base_dir), method="magic")


def test_sequential_request_trains_on_top_of_frozen_previous_adapters(tiny_base_dir, tmp_path):
    from legato_pl import ODEAdapterConfig, attach_adapters, load_adapters, save_adapters

    from conftest import randomize_

    first = attach_adapters(load_base_model(tiny_base_dir).unet, ODEAdapterConfig(hidden=8))
    randomize_(first, scale=0.2)  # a first request's trained adapters
    save_adapters(first, tmp_path / "first")
    module = UnlearningModule(str(tiny_base_dir), method=tiny(), lr=1e-2,
                              previous_adapters=[str(tmp_path / "first")])
    reference = load_base_model(tiny_base_dir).unet.eval()
    load_adapters(reference, tmp_path / "first")  # base + first request, as deployed
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([5, 50]), torch.tensor([1, 2])
    with torch.no_grad():
        expected = reference(x, t, class_labels=y).sample
        with module.method.teacher() as teacher:
            assert torch.equal(teacher(x, t, class_labels=y).sample, expected)  # the new teacher
        assert torch.equal(module.unet(x, t, class_labels=y).sample, expected)  # new adapters start at identity
    previous = _snapshot(module.previous_adapters)
    assert {id(p) for p in module.method.trainable_parameters()} == {id(p) for p in module.adapters.parameters()}
    _train(module, steps=2)
    assert all(torch.equal(v, previous[k]) for k, v in module.previous_adapters.state_dict().items())
    # the trajectory term reads the new adapters' path; the frozen request's is not kept
    assert module.method.trajectory_states() and not module.previous_adapters[0].trajectory_states()
    assert any(p.abs().sum() > 0 for n, p in module.adapters.named_parameters() if ".out." in n)
    # the sample CLI path: the second artifact alone is the stack; at strength 0 it is the first request alone
    from legato_pl.cli.sample import sample_grid

    module.method.save(tmp_path / "second")
    grid = dict(base_model=str(tiny_base_dir), identities=["person_01"], per_identity=2, steps=2)
    stacked = sample_grid(**grid, artifact=str(tmp_path / "second"), strengths=[0.0, 1.0])
    first_only = sample_grid(**grid, artifact=str(tmp_path / "first"), strengths=[1.0])
    assert torch.equal(stacked[0], first_only[0]) and not torch.equal(stacked[1], first_only[0])
    with pytest.raises(ValueError, match="cannot train on top"):
        UnlearningModule(str(tiny_base_dir), method="lora", previous_adapters=[str(tmp_path / "first")])


@pytest.mark.parametrize("method", ["legato", "lora", "full"])
def test_warm_start_continues_from_an_earlier_request_instead_of_stacking(tiny_base_dir, tmp_path, method):
    from types import SimpleNamespace

    first = UnlearningModule(str(tiny_base_dir), method=tiny(method), lr=1e-2)
    _train(first, steps=2)
    first.method.save(tmp_path / "first", base_model=str(tiny_base_dir), forget=["person_01"])
    module = UnlearningModule(str(tiny_base_dir), method=tiny(method), lr=1e-2, warm_start=str(tmp_path / "first"))
    deployed = load_base_model(tiny_base_dir).unet.eval()
    load_method(deployed, tmp_path / "first")
    base = load_base_model(tiny_base_dir).unet.eval()
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([5, 50]), torch.tensor([1, 2])
    with torch.no_grad():
        start = module.unet(x, t, class_labels=y).sample
        torch.testing.assert_close(start, deployed(x, t, class_labels=y).sample)  # starts where the request ended
        with module.method.teacher() as teacher:  # the teacher is still the base, not base + the earlier request
            assert torch.equal(teacher(x, t, class_labels=y).sample, base(x, t, class_labels=y).sample)
    assert all(p.requires_grad for p in module.method.trainable_parameters())
    _train(module, steps=1)
    with torch.no_grad():
        assert not torch.equal(module.unet(x, t, class_labels=y).sample, start)
    module.method.save(tmp_path / "second", base_model=str(tiny_base_dir), forget=["person_01", "person_02"])
    assert "stack" not in json.loads((tmp_path / "second" / "legato_method.json").read_text())  # one request
    # the earlier request's people stay forgotten: a forget list without them is refused before training
    data = SimpleNamespace(class_names=["person_00", "person_01", "person_02"], forget=["person_02"], image_size=16)
    with pytest.raises(ValueError, match="forgot person_01: list them in forget too"):
        module.bind_data(data)
    with pytest.raises(ValueError, match="replaces an earlier request, previous_adapters stacks"):
        UnlearningModule(str(tiny_base_dir), method=tiny(method), warm_start=str(tmp_path / "first"),
                         previous_adapters=[str(tmp_path / "first")])


def test_warm_start_refuses_another_method_options_or_a_stack(tiny_base_dir, tmp_path):
    import functools

    from legato_pl.methods import Legato

    _stack_of_two(tiny_base_dir, tmp_path)
    with pytest.raises(ValueError, match="warm_start: .* is a stack of 2 requests"):
        UnlearningModule(str(tiny_base_dir), method=tiny(), warm_start=str(tmp_path / "second"))
    with pytest.raises(ValueError, match="warm_start: .* is a legato artifact with options"):
        UnlearningModule(str(tiny_base_dir), method=functools.partial(Legato, adapter={"hidden": 4}),
                         warm_start=str(tmp_path / "second" / "stack" / "0"))
    with pytest.raises(ValueError, match="warm_start: .* is a legato artifact"):
        UnlearningModule(str(tiny_base_dir), method="lora", warm_start=str(tmp_path / "second" / "stack" / "0"))


def _stack_of_two(tiny_base_dir, tmp_path) -> tuple[torch.nn.Module, tuple]:
    """first (randomised adapters) -> second trained on top of it; the deployed UNet base + first + second."""
    from legato_pl import ODEAdapterConfig, attach_adapters, load_adapters, save_adapters

    from conftest import randomize_

    first = attach_adapters(load_base_model(tiny_base_dir).unet, ODEAdapterConfig(hidden=8))
    randomize_(first, scale=0.2)
    save_adapters(first, tmp_path / "first")
    module = UnlearningModule(str(tiny_base_dir), method=tiny(), lr=1e-2, previous_adapters=[str(tmp_path / "first")])
    _train(module, steps=2)
    module.method.save(tmp_path / "second", forget=["person_01"])
    deployed = load_base_model(tiny_base_dir).unet.eval()
    load_adapters(deployed, tmp_path / "first")
    load_adapters(deployed, tmp_path / "second")  # the second request's own adapters, on top
    return deployed, (torch.randn(2, 3, 16, 16), torch.tensor([5, 50]), torch.tensor([1, 2]))


def test_a_stack_loads_whole_from_its_last_artifact(tiny_base_dir, tmp_path):
    """load_method(second) is the deployed base + first + second (before stacks were one artifact: base + second)."""
    import shutil

    deployed, (x, t, y) = _stack_of_two(tiny_base_dir, tmp_path)
    shutil.move(tmp_path / "first", tmp_path / "first_moved")  # the stack does not depend on where first was
    unet = load_base_model(tiny_base_dir).unet.eval()
    method = load_method(unet, tmp_path / "second")
    with torch.no_grad():
        expected = deployed(x, t, class_labels=y).sample
        assert torch.equal(unet(x, t, class_labels=y).sample, expected)
        with method.at_strength(0.0):  # strength 0: base + the first request
            first_only = load_base_model(tiny_base_dir).unet.eval()
            load_method(first_only, tmp_path / "second" / "stack" / "0")
            assert torch.equal(unet(x, t, class_labels=y).sample, first_only(x, t, class_labels=y).sample)
    assert len(method.earlier) == 1 and all(not p.requires_grad for p in method.earlier[0].parameters())
    assert method.trajectory_states() and not method.earlier[0].trajectory_states()  # no path kept below the top
    # a third request on top of the second: one artifact, three requests, each kept once
    module = UnlearningModule(str(tiny_base_dir), method=tiny(), lr=1e-2, previous_adapters=[str(tmp_path / "second")])
    _train(module, steps=1)
    module.method.save(tmp_path / "third")
    meta = json.loads((tmp_path / "third" / "legato_method.json").read_text())
    assert [e["dir"] for e in meta["stack"]] == ["stack/0", "stack/1"]
    assert meta["stack"][1]["forget"] == ["person_01"]
    third = load_base_model(tiny_base_dir).unet.eval()
    load_method(third, tmp_path / "third", strength=0.0)
    with torch.no_grad():
        assert torch.equal(third(x, t, class_labels=y).sample, expected)  # third at 0 = the deployed first + second
    with pytest.raises(ValueError, match="in the stack twice"):
        UnlearningModule(str(tiny_base_dir), method=tiny(), previous_adapters=[
            str(tmp_path / "first_moved"), str(tmp_path / "second")])  # second already holds first


def test_a_request_on_a_stack_trains_in_the_memory_of_one_on_the_base(tiny_base_dir, tmp_path):
    """Backprop passes through the frozen earlier requests without keeping their ODE states (they integrate again
    in the backward pass): a training step saves about what it saves on the bare base."""
    from legato_pl import ODEAdapterConfig, attach_adapters, save_adapters

    from conftest import randomize_
    from harness import saved_bytes

    first = attach_adapters(load_base_model(tiny_base_dir).unet, ODEAdapterConfig(hidden=64))
    randomize_(first, scale=0.2)
    save_adapters(first, tmp_path / "first")
    saved = {}
    for previous in ([], [str(tmp_path / "first")]):
        module = UnlearningModule(str(tiny_base_dir), method=tiny(), previous_adapters=previous)
        saved[len(previous)] = saved_bytes(lambda m: m.total_loss(m.compute_losses(_batch())), module)[1]
    assert saved[1] < 1.1 * saved[0]


def test_a_stacked_request_can_hold_the_others_to_the_base(tiny_base_dir, tmp_path):
    """``retain_teacher="base"``: the retain term of a request on a stack matches the base alone for people no earlier
    request forgot (the stack, which the new zero-initialised adapters reproduce, then misses it) and the stack for
    the people earlier requests forgot (so they stay forgotten); ``"stack"`` matches the stack for everyone."""
    from legato_pl.data import IdentityDataModule

    _stack_of_two(tiny_base_dir, tmp_path)  # the second request forgot person_01
    dm = IdentityDataModule(forget="person_03", image_size=16, batch_size=4, num_synthetic_identities=4,
                            synthetic_images_per_identity=8, hflip=False)
    dm.setup("fit")
    torch.manual_seed(0)
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    retain = {}
    for teacher in ("stack", "base"):
        module = UnlearningModule(str(tiny_base_dir), method=tiny(), previous_adapters=[str(tmp_path / "second")],
                                  retain_teacher=teacher)
        module.bind_data(dm)
        for person in ("person_00", "person_01"):
            rows = {**batch, "retain_labels": torch.full_like(batch["retain_labels"], dm.class_names.index(person))}
            with torch.no_grad():
                retain[teacher, person] = float(module.compute_losses(rows)["retain"])
    # (not exactly 0: the teacher and the student batch their rows differently)
    assert max(retain["stack", "person_00"], retain["stack", "person_01"], retain["base", "person_01"]) < 1e-10
    assert retain["base", "person_00"] > 1e-4  # the stack drew person_00 otherwise than the base
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([5, 50]), torch.tensor([0, 2])
    with torch.no_grad():
        with module.base_unet() as base:  # every request's adapters off: the base alone
            alone = base(x, t, class_labels=y).sample
        assert torch.equal(alone, load_base_model(tiny_base_dir).unet.eval()(x, t, class_labels=y).sample)
        assert not torch.equal(module.unet(x, t, class_labels=y).sample, alone)  # all back on after
    with pytest.raises(ValueError, match="retain_teacher must be one of"):
        UnlearningModule(str(tiny_base_dir), method=tiny(), retain_teacher="previous")


@pytest.mark.parametrize("damage", ["missing", "changed"])
def test_a_stack_with_a_missing_or_changed_part_is_refused(tiny_base_dir, tmp_path, damage):
    import shutil

    _stack_of_two(tiny_base_dir, tmp_path)
    part = tmp_path / "second" / "stack" / "0"
    if damage == "missing":
        shutil.rmtree(part)
    else:
        weights = next(part.glob("*.safetensors"))
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="missing" if damage == "missing" else "changed since it was written"):
        load_method(load_base_model(tiny_base_dir).unet, tmp_path / "second")


def test_a_new_method_is_one_file(tiny_base_dir, tmp_path):
    """The docs' example method (docs/api.md): subclassing registers it; the module trains it, saves and reloads it."""
    import importlib.util

    source = Path(__file__).parent / "example_method.py"
    block = source.read_text()[source.read_text().index("class BiasOnly"):].strip()
    assert block in (Path(__file__).parents[1] / "docs" / "api.md").read_text()  # the docs show this very file
    spec = importlib.util.spec_from_file_location("bias_only", source)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    module = UnlearningModule(str(tiny_base_dir), method="bias_only", lr=1e-2)
    assert isinstance(module.method, example.BiasOnly)
    _train(module, steps=2)
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([5, 50]), torch.tensor([1, 2])
    with torch.no_grad():
        trained = module.unet(x, t, class_labels=y).sample
        module.method.save(tmp_path / "out")
        fresh = load_base_model(tiny_base_dir).unet
        loaded = load_method(fresh, tmp_path / "out", strength=0.0)
        assert torch.equal(fresh(x, t, class_labels=y).sample, load_base_model(tiny_base_dir).unet(
            x, t, class_labels=y).sample)
        loaded.strength = 1.0
        torch.testing.assert_close(fresh(x, t, class_labels=y).sample, trained)


def test_lora_artifact_loads_in_plain_diffusers(tmp_path):
    """The LoRA artifact is diffusers' own LoRA file: ``load_lora_adapter`` reproduces our student."""
    from legato_pl.methods.lora import LORA_FILE, LoRA

    from conftest import tiny_condition_unet

    unet = tiny_condition_unet()
    method = LoRA(unet, rank=2)
    with torch.no_grad():  # a trained LoRA: B is zero at init
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    method.save(tmp_path / "lora")
    assert (tmp_path / "lora" / LORA_FILE).is_file()
    x, t, text = torch.randn(2, 4, 16, 16), torch.tensor([5, 500]), torch.randn(2, 3, 8)
    plain = tiny_condition_unet()
    with torch.no_grad():
        base = plain(x, t, encoder_hidden_states=text).sample
        plain.load_lora_adapter(str(tmp_path / "lora"), prefix="unet", weight_name=LORA_FILE)  # diffusers alone
        expected = unet(x, t, encoder_hidden_states=text).sample
        assert not torch.allclose(expected, base)
        torch.testing.assert_close(plain(x, t, encoder_hidden_states=text).sample, expected)
        ours = tiny_condition_unet()
        load_method(ours, tmp_path / "lora")  # and our one loader reads it back
        torch.testing.assert_close(ours(x, t, encoder_hidden_states=text).sample, expected)


@pytest.mark.parametrize("method", ["legato", "lora"])
def test_a_half_precision_frozen_base_trains_fp32_parameters(tiny_base_dir, tmp_path, method):
    """base_dtype bf16: the frozen UNet in bf16, what trains in fp32; the adapted model starts at the base exactly."""
    from test_unlearning import _batch

    module = UnlearningModule(str(tiny_base_dir), method=tiny(method), base_dtype="bf16")
    assert {p.dtype for p in module.unet.parameters() if not p.requires_grad} == {torch.bfloat16}
    assert {p.dtype for p in module.method.trainable_parameters()} == {torch.float32}
    x, t, y = torch.randn(2, 3, 16, 16, dtype=torch.bfloat16), torch.tensor([5, 50]), torch.tensor([1, 2])
    with torch.no_grad():
        with module.method.teacher() as teacher:
            base = teacher(x, t, class_labels=y).sample
        assert torch.equal(module.unet(x, t, class_labels=y).sample, base)
    loss = module.total_loss(module.compute_losses(_batch()))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in module.method.trainable_parameters()]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)
    module.method.save(tmp_path / "art")
    load_method(load_base_model(tiny_base_dir).unet, tmp_path / "art")  # onto an fp32 pipeline


def test_base_dtype_refusals(tiny_base_dir):
    with pytest.raises(ValueError, match="base_dtype must be one of"):
        UnlearningModule(str(tiny_base_dir), method=tiny(), base_dtype="int8")
    with pytest.raises(ValueError, match="full fine-tune trains the UNet itself"):
        UnlearningModule(str(tiny_base_dir), method=tiny("full"), base_dtype="fp16")
