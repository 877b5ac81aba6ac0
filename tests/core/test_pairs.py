"""graph.core.pairs: the median lags, whichever way this machine finds them faster."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graph.core.pairs as pairs_module
from graph.core.flows import compute_flows
from graph.core.pairs import FAR, twice_medians
from tests.core.test_flows_and_hotspots import assert_flows_match, naive_flows, random_aggregates


def naive_twice_medians(lags: np.ndarray, shared: np.ndarray) -> list[int]:
    """Twice the median of each row's real lags (those under FAR // 2), by Python's sort."""
    result = []
    for row, n in zip(lags.tolist(), shared.tolist(), strict=True):
        real = sorted(value for value in row if value <= FAR // 2)
        assert len(real) == n
        result.append(real[(n - 1) // 2] + real[n // 2])
    return result


@st.composite
def lag_blocks(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A block of lags as the pair blocks make them: each row some real lags (at least one,
    ties and signs of every kind) and absent topics, each above FAR // 2."""
    rows = draw(st.integers(1, 12))
    width = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    spread = draw(st.sampled_from([3, 1_000, 48 * 3_600_000_000]))
    rng = np.random.default_rng(seed)
    lags = rng.integers(-spread, spread + 1, size=(rows, width))
    absent = rng.random((rows, width)) < draw(st.sampled_from([0.0, 0.3, 0.9, 1.0]))
    absent[np.arange(rows), rng.integers(0, width, size=rows)] = False  # one shared topic
    # Absent: FAR less the owner's first sighting, as `PairBlocks` subtracts it.
    lags[absent] = FAR - rng.integers(1, 10**12, size=int(absent.sum()))
    return lags, width - absent.sum(axis=1)


@settings(max_examples=300, deadline=None)
@given(lag_blocks())
def test_selecting_and_sorting_give_the_exact_medians(block: tuple[np.ndarray, np.ndarray]) -> None:
    lags, shared = block
    expected = naive_twice_medians(lags, shared)
    assert twice_medians(lags.copy(), shared, select=False).tolist() == expected
    assert twice_medians(lags.copy(), shared, select=True).tolist() == expected


def test_the_machine_chooses_once_and_flows_stay_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A window large enough times both ways (once per process) and takes the faster: the
    same flows as sorting, and as the reference."""
    aggregates = random_aggregates(5, 30, 90, 0.5)
    sorted_rows = compute_flows(aggregates, threshold=0.05, halflife_hours=6.0)
    monkeypatch.setattr(pairs_module, "_TIMED_CELLS", 0)
    timed = compute_flows(aggregates, threshold=0.05, halflife_hours=6.0)
    assert timed == sorted_rows and len(timed) > 20
    assert_flows_match(timed, naive_flows(aggregates, 6.0, None), 0.05)
