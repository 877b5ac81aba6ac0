"""Heat: how strongly a topic mix flows between two countries, given their lag.

heat = similarity x 0.5 ^ (time_delta_hours / halflife): 1.0 at no lag with identical mixes,
halved for every half-life of lag (DESIGN.md, Flows, step 7).
"""

from __future__ import annotations

from typing import overload

import numpy as np
import numpy.typing as npt

__all__ = ["HEAT_EPSILON", "check_halflife", "heat"]

FloatArray = npt.NDArray[np.float64]

HEAT_EPSILON: float = 1e-9
"""Threshold comparisons are ``heat >= threshold - HEAT_EPSILON``, so float noise never drops a
flow that sits exactly on the threshold."""


@overload
def heat(similarity: float, time_delta_hours: float, halflife_hours: float) -> float: ...


@overload
def heat(
    similarity: FloatArray, time_delta_hours: FloatArray, halflife_hours: float
) -> FloatArray: ...


def heat(
    similarity: float | FloatArray, time_delta_hours: float | FloatArray, halflife_hours: float
) -> float | FloatArray:
    """Similarity halved for every half-life of lag: 1.0 at 0 h with similarity 1, 0.5 at one.

    Elementwise over arrays: the flows are computed a whole block of pairs at once, so this is
    the one formula (numpy's power, which can differ from math.pow in the last bit). A heat
    never exceeds its similarity, to the last bit: the factor is at most 1.
    """
    check_halflife(halflife_hours)
    value = similarity * np.power(0.5, time_delta_hours / halflife_hours)
    return value if isinstance(value, np.ndarray) else float(value)


def check_halflife(halflife_hours: float) -> None:
    if not halflife_hours > 0:
        raise ValueError(f"halflife_hours must be > 0, got {halflife_hours}")
