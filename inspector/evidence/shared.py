"""Computations several estimators read from one image's luminance, made once per image.

The blur estimator, the resolution estimator and the features each used to compute
the same intermediate arrays for themselves: the 2x2-binned copy (blur's edge points,
the features' half-resolution noise), the difference profiles (resolution's pattern
search and the duplicate share, read twice) and the spectrum of the row differences
(passband_fall in choose_factor and in the features, spectral_sigma in the features and,
under noise or without edges, in the blur estimator, spectrum_features). `measure` makes one
`Shared` per image and hands it to each; a function given `shared=None` makes its own,
so it computes exactly what it computed alone. The arrays are the very ones the
functions computed before (same operations in the same order): sharing them changes no
reading, not even in the last bit.

The arrays are not to be modified by the callers (they are handed out, not copied).
"""

from __future__ import annotations

import numpy as np


class Shared:
    """Lazily computed, memoised intermediates of one luminance array (float32, 0-255)."""

    def __init__(self, luma: np.ndarray):
        self.luma = luma
        self._half: np.ndarray | None = None
        self._profiles: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self._line_powers: dict[int, tuple] = {}

    def half(self) -> np.ndarray:
        """`blur.half_resolution(luma)`: the 2x2 mean."""
        if self._half is None:
            from inspector.evidence.blur import half_resolution

            self._half = half_resolution(self.luma)
        return self._half

    def profiles(self, axis: int) -> list[np.ndarray]:
        """`resolution.difference_profiles(luma, axis)[0]`: mean |first| and |second| differences."""
        return self._difference_profiles(axis)[0]

    def pattern_profiles(self, axis: int) -> list[np.ndarray]:
        """`resolution.difference_profiles(luma, axis)[1]`: their L3 means, where patterns are searched."""
        return self._difference_profiles(axis)[1]

    def _difference_profiles(self, axis: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if axis not in self._profiles:
            from inspector.evidence.resolution import difference_profiles

            self._profiles[axis] = difference_profiles(self.luma, axis)
        return self._profiles[axis]

    def line_powers(self, length: int = 512) -> tuple:
        """`resolution.line_powers(luma, length)`: the row and column difference spectra, noise kept."""
        if length not in self._line_powers:
            from inspector.evidence.resolution import line_powers

            self._line_powers[length] = line_powers(self.luma, length)
        return self._line_powers[length]


def shared_for(luma: np.ndarray, shared: Shared | None) -> Shared:
    """`shared` when it belongs to `luma`, a fresh one when None."""
    if shared is None:
        return Shared(luma)
    if shared.luma is not luma:
        raise ValueError("shared belongs to another luminance array")
    return shared
