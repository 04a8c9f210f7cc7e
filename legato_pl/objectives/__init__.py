"""Forget, retain, trajectory-consistency and adjacency objectives, and the adversarial inner attacker."""

from legato_pl.objectives.adversary import ConditionAdversary
from legato_pl.objectives.losses import (
    FORGET_TARGETS,
    adjacent_embeddings,
    forget_target,
    preservation,
    trajectory_consistency,
)

__all__ = ["FORGET_TARGETS", "ConditionAdversary", "adjacent_embeddings", "forget_target", "preservation",
           "trajectory_consistency"]
