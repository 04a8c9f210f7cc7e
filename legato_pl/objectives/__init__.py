"""Forget, retain, trajectory-consistency and adjacency objectives."""

from legato_pl.objectives.losses import (
    FORGET_TARGETS,
    adjacent_embeddings,
    forget_target,
    preservation,
    trajectory_consistency,
)

__all__ = ["FORGET_TARGETS", "adjacent_embeddings", "forget_target", "preservation", "trajectory_consistency"]
