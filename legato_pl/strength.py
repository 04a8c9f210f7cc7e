"""The strength knob shared by ODE adapters and every unlearning method: a value in [0, 1], 0 being
the base model exactly, with a scoped override."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from legato_pl.errors import LegatoInputError


class StrengthKnob:
    """Mixin: ``strength`` (validated, applied through :meth:`_apply_strength`) and ``at_strength``."""

    _strength: float = 1.0

    @property
    def strength(self) -> float:
        """0 is the base model exactly, 1 the trained result."""
        return self._strength

    @strength.setter
    def strength(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise LegatoInputError(f"strength must be in [0, 1], got {value}")
        self._apply_strength(value)
        self._strength = value

    def _apply_strength(self, value: float) -> None:
        """Make the model follow ``value`` (called before it is stored; ``self.strength`` is still the old one)."""

    @contextmanager
    def at_strength(self, value: float) -> Iterator[None]:
        """Within the block the strength is ``value``; the previous one is restored after."""
        previous = self.strength
        self.strength = value
        try:
            yield
        finally:
            self.strength = previous
