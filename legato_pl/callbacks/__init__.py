"""Callbacks: forgetting curves across ODE steps and fixed-seed sample grids."""

from legato_pl.callbacks.forgetting_curve import ForgettingCurve, curve_figure, sample_grid
from legato_pl.callbacks.samples import SampleGrid

__all__ = ["ForgettingCurve", "SampleGrid", "curve_figure", "sample_grid"]
