"""Callbacks: forgetting curves across ODE steps, fixed-seed sample grids, stopping once a person is forgotten."""

from legato_pl.callbacks.forgetting_curve import ForgettingCurve, curve_figure, sample_grid
from legato_pl.callbacks.samples import SampleGrid
from legato_pl.callbacks.stop_when_forgotten import StopWhenForgotten

__all__ = ["ForgettingCurve", "SampleGrid", "StopWhenForgotten", "curve_figure", "sample_grid"]
