"""The adapter contract: exact identity at init and strength 0, frozen base, solver correctness, I/O."""

from __future__ import annotations

import math

import pytest
import torch

from legato_pl import LegatoInputError, ODEAdapterConfig, attach_adapters, load_adapters, save_adapters
from legato_pl.adapters.layer import ODEAdapter, time_grid

from conftest import randomize_, tiny_condition_unet, tiny_unet
from harness import saved_bytes


def _inputs(unet, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = unet.config.in_channels
    x = torch.randn(2, c, 16, 16, generator=g)
    t = torch.tensor([3, 70])
    if hasattr(unet.config, "cross_attention_dim") and unet.config.cross_attention_dim:
        return (x, t), {"encoder_hidden_states": torch.randn(2, 5, unet.config.cross_attention_dim, generator=g)}
    return (x, t), {"class_labels": torch.tensor([0, 2])}


def _out(unet, inputs):
    with torch.no_grad():
        return unet(*inputs[0], **inputs[1]).sample


UNETS = {"UNet2DModel": tiny_unet, "UNet2DConditionModel": tiny_condition_unet}
STAGES = ["up", "down", "mid", "all", ["up_blocks.1", "mid_block"]]


@pytest.mark.parametrize("kind", list(UNETS))
@pytest.mark.parametrize("stages", STAGES, ids=str)
def test_identity_at_init_strength_zero_disabled_and_detach(kind, stages):
    unet = UNETS[kind]()
    inputs = _inputs(unet)
    base = _out(unet, inputs)
    adapters = attach_adapters(unet, ODEAdapterConfig(stages=stages, hidden=8))
    assert torch.equal(_out(unet, inputs), base)  # zero-initialised: exactly the base model
    randomize_(adapters)
    trained = _out(unet, inputs)
    assert not torch.allclose(trained, base)
    adapters.strength = 0.0
    assert torch.equal(_out(unet, inputs), base)
    adapters.strength = 1.0
    with adapters.disabled():
        assert torch.equal(_out(unet, inputs), base)
    assert torch.equal(_out(unet, inputs), trained)
    adapters.remove()
    assert torch.equal(_out(unet, inputs), base)


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4", "dopri5", "bosh3"])
def test_identity_at_init_for_every_solver(method):
    unet = tiny_unet()
    inputs = _inputs(unet)
    base = _out(unet, inputs)
    attach_adapters(unet, ODEAdapterConfig(hidden=8, method=method))
    assert torch.equal(_out(unet, inputs), base)


def test_only_adapter_parameters_receive_gradients():
    unet = tiny_unet()
    for p in unet.parameters():
        p.requires_grad_(True)  # attach must freeze the base whatever its state
    adapters = attach_adapters(unet, ODEAdapterConfig(hidden=8))
    randomize_(adapters, scale=0.05)
    adapter_ids = {id(p) for p in adapters.parameters()}
    assert all(not p.requires_grad for p in unet.parameters())
    (x, t), kw = _inputs(unet)
    unet(x, t, **kw).sample.square().mean().backward()
    assert all(p.grad is None for p in unet.parameters())
    grads = [p.grad for p in adapters.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert not adapter_ids & {id(p) for p in unet.parameters()}
    # the adapter module owns no UNet state: its state dict is adapters only
    assert all(k.startswith("adapters.") for k in adapters.state_dict())


def test_trajectory_states_follow_strength_and_grid():
    unet = tiny_unet()
    adapters = attach_adapters(unet, ODEAdapterConfig(hidden=8))
    inputs = _inputs(unet)
    _out(unet, inputs)
    states = adapters.trajectory_states()
    assert set(states) == {"up_blocks.0", "up_blocks.1"}
    assert all(s.shape[0] == 5 for s in states.values())  # t = 0, 0.4, ..., 1.6
    adapters.strength = 0.5
    _out(unet, inputs)
    assert all(s.shape[0] == 3 for s in adapters.trajectory_states().values())
    expected = _out(unet, inputs)
    adapters.record_states = False  # a request frozen under later ones: the same output, no path kept
    assert adapters.trajectory_states() == {} and torch.equal(_out(unet, inputs), expected)
    assert adapters.trajectory_states() == {}
    assert time_grid(0.3 * 1.6, 0.4) == pytest.approx([0.0, 0.4, 0.48])
    assert time_grid(1.6, 0.4) == pytest.approx([0.0, 0.4, 0.8, 1.2, 1.6])


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_strength_outside_unit_interval_is_refused(bad):
    adapters = attach_adapters(tiny_unet(), ODEAdapterConfig(hidden=8))
    with pytest.raises(LegatoInputError, match="strength"):
        adapters.strength = bad


def _linear_adapter(a: float, method: str, channels: int = 3) -> ODEAdapter:
    """f(h) = a * h for h > 0 (identity first conv, a * identity second conv)."""
    adapter = ODEAdapter(channels, ODEAdapterConfig(hidden=channels, method=method, rtol=1e-9, atol=1e-9)).double()
    with torch.no_grad():
        adapter.field.inp.weight.copy_(torch.eye(channels).reshape(channels, channels, 1, 1))
        adapter.field.inp.bias.zero_()
        adapter.field.out.weight.copy_(a * torch.eye(channels).reshape(channels, channels, 1, 1))
        adapter.field.out.bias.zero_()
    return adapter


@pytest.mark.parametrize("strength", [1.0, 0.5, 0.3])
def test_euler_matches_its_closed_form(strength):
    a = 0.7
    h0 = torch.rand(2, 3, 4, 4, dtype=torch.float64) + 0.1
    h, states = _linear_adapter(a, "euler")(h0, strength)
    grid = time_grid(strength * 1.6, 0.4)
    expected = h0 * math.prod(1 + a * (t1 - t0) for t0, t1 in zip(grid, grid[1:]))
    torch.testing.assert_close(h, expected)
    assert states.shape[0] == len(grid)


@pytest.mark.parametrize("strength", [1.0, 0.3])
def test_euler_states_and_gradients_equal_torchdiffeq(strength):
    """The Euler path (no preallocated solution tensor) is torchdiffeq's Euler: the same states bit for bit, the
    same gradients up to the order of float summation in the backward."""
    from torchdiffeq import odeint

    from legato_pl.adapters.layer import euler

    torch.manual_seed(0)
    adapter = ODEAdapter(4, ODEAdapterConfig(hidden=8, condition="none"))
    torch.nn.init.normal_(adapter.field.out.weight, std=0.3)
    h0 = torch.randn(2, 4, 5, 5)
    t = torch.tensor(time_grid(strength * 1.6, 0.4))
    grads = []
    for solve in (lambda f, h, grid: torch.stack(euler(f, h, grid)), lambda f, h, grid: odeint(f, h, grid, method="euler")):
        adapter.zero_grad()
        states = solve(adapter.field, h0, t)
        (states[-1].square().mean() + (states[1:] - states[:-1]).square().mean()).backward()
        grads.append((states.detach(), adapter.field.inp.weight.grad.clone(), adapter.field.out.weight.grad.clone()))
    (states, *ours), (states_ref, *theirs) = grads
    assert torch.equal(states, states_ref)
    for g, g_ref in zip(ours, theirs):
        torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["euler", "dopri5"])
def test_end_state_is_its_own_tensor_not_a_view_of_the_path(method):
    """The UNet saves the adapter's output for backward: as a view of the stacked states it would keep them all."""
    adapter = ODEAdapter(4, ODEAdapterConfig(hidden=8, method=method))
    randomize_(adapter, scale=0.3)
    h, states = adapter(torch.randn(2, 4, 5, 5, requires_grad=True), 1.0)
    assert torch.equal(h, states[-1])
    assert h.untyped_storage().data_ptr() != states.untyped_storage().data_ptr()


def test_a_frozen_adapter_keeps_only_its_input_and_integrates_again_in_backward(monkeypatch):
    """An earlier request under a new one: gradients pass through it, its states are recomputed, not kept."""
    import legato_pl.adapters.layer as layer

    torch.manual_seed(0)
    frozen = ODEAdapter(4, ODEAdapterConfig(hidden=64, condition="timestep")).requires_grad_(False)
    randomize_(frozen, scale=0.3)
    h0 = torch.randn(2, 4, 6, 6)
    condition = frozen.condition_from(torch.tensor([3, 70]), None, 2)
    scale = torch.ones(1, 4, 1, 1, requires_grad=True)  # a trainable layer before the frozen adapter
    runs = {}
    for recompute in (True, False):
        if not recompute:
            monkeypatch.setattr(layer, "recompute_in_backward", lambda adapter, h: False)
        scale.grad = None
        loss, nbytes = saved_bytes(lambda h: frozen(h * scale, 1.0, condition)[0].square().sum(), h0)
        loss.backward()
        runs[recompute] = (nbytes, scale.grad.clone())
    (kept_bytes, grad), (all_bytes, grad_ref) = runs[True], runs[False]
    assert torch.equal(grad, grad_ref)  # recomputing is exact
    # h0 and h0 * scale (the product's and the adapter's input), the loss's square and the condition; without
    # recomputing, also 4 Euler steps of 64 hidden channels
    assert kept_bytes <= 4 * h0.nbytes and all_bytes > 20 * kept_bytes
    assert frozen.field.condition is None


def test_adaptive_solver_matches_exponential():
    a = 0.7
    h0 = torch.rand(2, 3, 4, 4, dtype=torch.float64) + 0.1
    h, _ = _linear_adapter(a, "dopri5")(h0, 1.0)
    torch.testing.assert_close(h, h0 * math.exp(a * 1.6), rtol=1e-6, atol=1e-8)


def test_adjoint_gradients_match_direct_backprop():
    torch.manual_seed(0)
    h0 = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        # a smooth field (slope 1) so both gradients converge to the same continuous-time answer
        config = ODEAdapterConfig(hidden=6, method="dopri5", adjoint=adjoint, rtol=1e-9, atol=1e-9, negative_slope=1.0)
        adapter = ODEAdapter(4, config).double()
        randomize_(adapter, scale=0.3)
        h, _ = adapter(h0, 1.0)
        h.square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in adapter.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_vector_field_gradcheck_float64():
    adapter = ODEAdapter(3, ODEAdapterConfig(hidden=5)).double()
    randomize_(adapter, scale=0.5)
    h0 = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h: adapter(h, 0.7)[0], (h0,))


def test_timestep_conditioning_identity_at_init_then_depends_on_timestep():
    unet = tiny_unet()
    (x, _), kw = _inputs(unet)
    base = _out(unet, ((x, torch.tensor([5, 5])), kw))
    adapters = attach_adapters(unet, ODEAdapterConfig(hidden=8, condition="timestep"))
    assert torch.equal(_out(unet, ((x, torch.tensor([5, 5])), kw)), base)
    randomize_(adapters)
    with adapters.disabled():
        b5, b50 = _out(unet, ((x, torch.tensor([5, 5])), kw)), _out(unet, ((x, torch.tensor([50, 50])), kw))
    a5, a50 = _out(unet, ((x, torch.tensor([5, 5])), kw)), _out(unet, ((x, torch.tensor([50, 50])), kw))
    assert not torch.allclose(a5 - b5, a50 - b50)


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "nope"}, "valid methods"),
    ({"stages": "sideways"}, "stages"),
    ({"hidden": 0}, "hidden"),
    ({"t_end": -1.0}, "t_end"),
    ({"step_size": 2.0}, "step_size"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ODEAdapterConfig(**kwargs)


def test_unknown_stage_name_is_refused_naming_it():
    with pytest.raises(LegatoInputError, match="up_blocks.7"):
        attach_adapters(tiny_unet(), ODEAdapterConfig(stages=["up_blocks.7"]))


@pytest.mark.parametrize("options", [{"stages": "all"}, {"condition": "embedding"}], ids=str)
def test_save_load_round_trip(tmp_path, options):
    unet = tiny_unet()
    inputs = _inputs(unet)
    adapters = attach_adapters(unet, ODEAdapterConfig(hidden=8, **options))
    randomize_(adapters)
    trained = _out(unet, inputs)
    save_adapters(adapters, tmp_path / "run")
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"ode_adapters.json", "adapters.safetensors"}
    fresh = tiny_unet()
    loaded = load_adapters(fresh, tmp_path / "run", strength=1.0)
    assert torch.equal(_out(fresh, inputs), trained)
    loaded.strength = 0.0
    assert torch.equal(_out(fresh, inputs), _out(tiny_unet(), inputs))


def test_loading_onto_mismatched_unet_names_the_stage(tmp_path):
    adapters = attach_adapters(tiny_unet(), ODEAdapterConfig(hidden=8))
    save_adapters(adapters, tmp_path / "run")
    other = tiny_condition_unet()  # block channels (16, 32) reversed differently: up_blocks.0 has 32
    wider = type(tiny_unet())(**{**dict(tiny_unet().config), "block_out_channels": (16, 48)})
    with pytest.raises(LegatoInputError, match="stage 'up_blocks.0'"):
        load_adapters(wider, tmp_path / "run")
    del other
    deeper = type(tiny_unet())(**{**dict(tiny_unet().config), "block_out_channels": (16,), "down_block_types": ("DownBlock2D",),
                                 "up_block_types": ("UpBlock2D",)})
    with pytest.raises(LegatoInputError, match="up_blocks.1"):
        load_adapters(deeper, tmp_path / "run")


@pytest.mark.parametrize("kind", list(UNETS))
def test_embedding_condition_identity_at_init_and_strength_zero(kind):
    """f sees the stage's temb (diffusers passes it positionally or by keyword): exact identity at init
    and at strength 0, and the trained adapters act."""
    unet = UNETS[kind]()
    inputs = _inputs(unet)
    base = _out(unet, inputs)
    adapters = attach_adapters(unet, ODEAdapterConfig(hidden=8, condition="embedding", stages="all"))
    assert torch.equal(_out(unet, inputs), base)
    randomize_(adapters)
    with adapters.at_strength(0.0):
        assert torch.equal(_out(unet, inputs), base)
    assert not torch.allclose(_out(unet, inputs), base)


def test_conditioned_field_tells_conditions_apart_on_the_same_features():
    """Same h, two conditions: a conditioned field makes two different edits (an unconditioned one cannot)."""
    adapter = ODEAdapter(4, ODEAdapterConfig(hidden=6, condition="embedding"), cond_dim=12)
    randomize_(adapter, scale=0.3)
    h = torch.randn(1, 4, 3, 3).expand(2, -1, -1, -1)
    out, _ = adapter(h, 1.0, condition=torch.randn(2, 12))
    assert not torch.allclose(out[0], out[1])
    same, _ = adapter(h, 1.0, condition=torch.randn(1, 12).expand(2, -1))
    torch.testing.assert_close(same[0], same[1])


def test_embedding_condition_refuses_another_embedding_width(tmp_path):
    save_adapters(attach_adapters(tiny_unet(), ODEAdapterConfig(hidden=8, condition="embedding")), tmp_path / "run")
    other = type(tiny_unet())(**{**dict(tiny_unet().config), "time_embedding_dim": 48})
    with pytest.raises(LegatoInputError, match="time embedding has 48 channels"):
        load_adapters(other, tmp_path / "run")


def test_embedding_condition_needs_a_stage_that_takes_temb():
    with pytest.raises(LegatoInputError, match="takes no temb"):
        attach_adapters(tiny_unet(), ODEAdapterConfig(hidden=8, condition="embedding", stages=["conv_in"]))


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_kernel_size_identity_at_init(kernel_size):
    unet = tiny_unet()
    inputs = _inputs(unet)
    base = _out(unet, inputs)
    adapters = attach_adapters(unet, ODEAdapterConfig(hidden=8, kernel_size=kernel_size))
    assert adapters.adapters["up_blocks__0"].field.inp.kernel_size == (kernel_size, kernel_size)
    assert torch.equal(_out(unet, inputs), base)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_adapters_follow_the_unet_dtype(tmp_path, dtype):
    """fp16 / bf16 pipelines: attach and load put the adapters in the UNet's dtype, and a forward runs."""
    unet = tiny_unet().to(dtype)
    (x, t), kw = _inputs(unet)
    adapters = attach_adapters(unet, ODEAdapterConfig(hidden=8, condition="embedding"))
    assert {p.dtype for p in adapters.parameters()} == {dtype}
    randomize_(adapters)
    with torch.no_grad():
        out = unet(x.to(dtype), t, **kw).sample
    assert out.dtype == dtype and torch.isfinite(out).all()
    save_adapters(adapters, tmp_path / "run")
    loaded = load_adapters(tiny_unet().to(dtype), tmp_path / "run")
    assert {p.dtype for p in loaded.parameters()} == {dtype}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_half_precision_states_integrate_on_an_fp32_time_grid(dtype, method):
    """At strength 0.2505 the grid ends 0.4, 0.4008: one number in bf16 (torchdiffeq refused the grid as not
    increasing, Euler took a zero step). The grid stays fp32; the result is the fp32 solve's within half precision."""
    torch.manual_seed(0)
    adapter = ODEAdapter(8, ODEAdapterConfig(hidden=8, condition="none", method=method))
    torch.nn.init.normal_(adapter.field.out.weight, std=0.3)
    h = torch.randn(2, 8, 4, 4)
    expected, _ = adapter(h, strength=0.2505)
    out, states = adapter.to(dtype)(h.to(dtype), strength=0.2505)
    assert out.dtype == dtype and states.shape[0] == len(time_grid(0.2505 * 1.6, 0.4))
    torch.testing.assert_close(out.float(), expected, rtol=0.02, atol=0.02)


def test_solver_names_match_torchdiffeq():
    """We list torchdiffeq's solvers to validate configs without importing its private modules."""
    from torchdiffeq._impl.odeint import SOLVERS as torchdiffeq_solvers

    from legato_pl.adapters.config import SOLVERS

    assert set(SOLVERS) == set(torchdiffeq_solvers)


def test_paper_preset():
    paper = ODEAdapterConfig.paper()
    assert (paper.hidden, paper.condition, paper.kernel_size, paper.t_end, paper.step_size, paper.method) == (
        256, "none", 1, 1.6, 0.4, "euler")
