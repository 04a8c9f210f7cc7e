"""Objective terms on hand-built tensors with known answers."""

from __future__ import annotations

import pytest
import torch

from legato_pl.objectives import adjacent_embeddings, forget_target, preservation, trajectory_consistency


def test_anchor_target_is_the_null_prediction():
    null, cond = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.equal(forget_target(null, cond, "anchor"), null)
    assert torch.equal(forget_target(null, cond, "untrained"), null)  # the caller passes the fresh row's prediction


def test_negative_target_extrapolates_away_from_the_condition():
    null, cond = torch.zeros(1, 2), torch.tensor([[1.0, -2.0]])
    torch.testing.assert_close(forget_target(null, cond, "negative", eta=0.5), torch.tensor([[-0.5, 1.0]]))
    with pytest.raises(ValueError, match="conditional"):
        forget_target(null, None, "negative")
    with pytest.raises(ValueError, match="valid"):
        forget_target(null, cond, "sideways")


def test_preservation_is_mean_squared_error():
    assert preservation(torch.ones(4), torch.zeros(4)).item() == pytest.approx(1.0)


def test_trajectory_consistency_is_mean_squared_step():
    # adapter 1: states 0, 1, 3 (steps 1 and 2 -> mean of squares 2.5); adapter 2: constant (0)
    a = torch.tensor([0.0, 1.0, 3.0]).reshape(3, 1, 1)
    b = torch.ones(5, 2, 2)
    assert trajectory_consistency([a, b]).item() == pytest.approx(1.25)
    assert trajectory_consistency([a]).item() == pytest.approx(2.5)
    assert trajectory_consistency([torch.ones(1, 3)]).item() == 0.0


def test_adjacent_embeddings_move_alpha_towards_retain():
    e_f = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    e_r = torch.tensor([[3.0, 4.0], [1.0, 3.0]])
    alpha = torch.tensor([0.5, 2.0])
    adj = adjacent_embeddings(e_f, e_r, alpha)
    torch.testing.assert_close(adj, torch.tensor([[0.3, 0.4], [1.0, 3.0]]))
    torch.testing.assert_close((adj - e_f).norm(dim=1), alpha)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_denoising_loss_targets_what_the_scheduler_predicts(kind):
    """One helper for pretraining and the attacks: a predictor that returns the right target for the
    scheduler's ``prediction_type`` has loss 0; one returning another kind's target does not."""
    from diffusers import DDPMScheduler

    from legato_pl.models.diffusion import add_noise, denoising_loss, diffusion_target

    scheduler = DDPMScheduler(num_train_timesteps=100, prediction_type=kind)
    x0 = torch.randn(4, 3, 8, 8)
    _, noise, t = add_noise(scheduler, x0, torch.Generator().manual_seed(3))
    wanted = {"epsilon": noise, "v_prediction": scheduler.get_velocity(x0, noise, t), "sample": x0}
    assert torch.equal(diffusion_target(scheduler, x0, noise, t), wanted[kind])
    for other, value in wanted.items():
        loss = denoising_loss(scheduler, x0, lambda x, s, v=value: v, torch.Generator().manual_seed(3))
        assert (loss.item() == 0.0) == (other == kind), (other, loss)


def test_denoising_loss_refuses_an_unknown_prediction_type():
    from diffusers import DDPMScheduler

    from legato_pl.errors import LegatoInputError
    from legato_pl.models.diffusion import denoising_loss

    scheduler = DDPMScheduler(num_train_timesteps=10)
    scheduler.register_to_config(prediction_type="flow")
    with pytest.raises(LegatoInputError, match="unsupported prediction_type 'flow'"):
        denoising_loss(scheduler, torch.zeros(1, 3, 4, 4), lambda x, t: x)


def test_batched_forward_runs_once_and_returns_each_part_by_its_name():
    """Every part goes through one call, in the order added, and each name gets back exactly its own rows
    (a per-row predictor: x * cond + t); a name added twice is refused."""
    from legato_pl.models.diffusion import BatchedForward

    parts = {"forget": (torch.randn(2, 3), torch.tensor([1, 2]), torch.randn(2, 3)),
             "retain": (torch.randn(3, 3), torch.tensor([3, 4, 5]), torch.randn(3, 3))}
    forward, calls = BatchedForward(), []
    for name, part in parts.items():
        forward[name] = part
    with pytest.raises(KeyError, match="'retain' is already"):
        forward["retain"] = parts["retain"]

    def predict(x, t, c):
        calls.append(len(x))
        return (x * c + t[:, None]).half()

    out = forward(predict)
    assert calls == [5] and list(out) == ["forget", "retain"]
    for name, (x, t, c) in parts.items():
        assert out[name].dtype == torch.float32
        torch.testing.assert_close(out[name], (x * c + t[:, None]).half().float())
