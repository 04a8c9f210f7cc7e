"""Objective terms on hand-built tensors with known answers."""

from __future__ import annotations

import pytest
import torch

from legato_pl.objectives import adjacent_embeddings, forget_target, preservation, trajectory_consistency


def test_anchor_target_is_the_null_prediction():
    null, cond = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.equal(forget_target(null, cond, "anchor"), null)


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
