"""Crossings: which flows newly reached a threshold since the previous snapshot."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from graph.core.flows import HEAT_EPSILON, Flow

Pair = tuple[str, str]


def pair(flow: Flow) -> Pair:
    return flow.from_country, flow.to_country


@dataclass(eq=False, slots=True)
class Crossings:
    """What is hot now for one (countries, threshold), snapshot after snapshot.

    ``hot`` is None until a first snapshot (or ``start``) says what was already hot: nothing
    is new before that. A flow that falls below the threshold and comes back is new again.
    """

    countries: frozenset[str] | None
    threshold: float
    hot: set[Pair] | None = None

    def wants(self, flow: Flow) -> bool:
        if flow.heat < self.threshold - HEAT_EPSILON:
            return False
        return self.countries is None or {flow.from_country, flow.to_country} <= self.countries

    def start(self, current: Iterable[Flow]) -> None:
        """Take ``current`` (already filtered) as what is hot, unless a snapshot came first."""
        if self.hot is None:
            self.hot = {pair(f) for f in current}

    def update(self, flows: Iterable[Flow]) -> list[Flow]:
        """The flows of this snapshot that were not hot in the previous one."""
        current = {pair(f): f for f in flows if self.wants(f)}
        previous, self.hot = self.hot, set(current)
        if previous is None:
            return []
        # A reversed pair is the same flow changing direction, not a new one.
        seen = previous | {(b, a) for a, b in previous}
        return [f for key, f in current.items() if key not in seen]
