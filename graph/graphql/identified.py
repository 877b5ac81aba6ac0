"""The flows and hotspots of an answer with their ids (graph.core.identity), made once per
cached payload and span: a cache hit on the response cache's local copy hands out the same
payload bytes, so their objects are made once and shared (nothing mutates them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson

from graph.core.flows import Flow
from graph.core.identity import (
    IdentifiedFlow,
    IdentifiedHotspot,
    answer_prefix,
    flow_with_id,
    hotspot_with_id,
)
from graph.graphql.identity_memo import IdentityMemo
from graph.service.answer import Answer

# By payload: the identified items of each answer prefix (window and as_of) it was read with.
_flows: IdentityMemo[bytes, dict[str, list[IdentifiedFlow]]] = IdentityMemo(lambda _: {}, 64)
_hotspots: IdentityMemo[bytes, dict[str, list[IdentifiedHotspot]]] = IdentityMemo(lambda _: {}, 64)

T = TypeVar("T")


def _identified(
    answer: Answer,
    memo: IdentityMemo[bytes, dict[str, list[T]]],
    make: Callable[[Mapping[str, Any], str], T],
) -> list[T]:
    """The answer's items with their ids, made once per payload and prefix."""
    prefix = answer_prefix(answer.span.window, answer.span.as_of)
    made = memo(answer.payload)
    found = made.get(prefix)
    if found is None:
        found = made[prefix] = [make(item, prefix) for item in orjson.loads(answer.payload)]
    return found


def identified_flows(answer: Answer) -> list[IdentifiedFlow]:
    """The answer's flows, each with its id."""
    return _identified(answer, _flows, flow_with_id)


def identified_hotspots(answer: Answer) -> list[IdentifiedHotspot]:
    """The answer's hotspots, each with its id."""
    return _identified(answer, _hotspots, hotspot_with_id)


def identified(flow: Flow) -> IdentifiedFlow:
    """A live flow as the broadcaster delivers it: already identified (by its snapshot)."""
    if not isinstance(flow, IdentifiedFlow):
        raise TypeError("live flows carry their id (graph.live.broadcaster)")
    return flow
