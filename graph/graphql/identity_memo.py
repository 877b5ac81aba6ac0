"""IdentityMemo: what was made from a recent object, found again by the object's identity."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

S = TypeVar("S")
T = TypeVar("T")


class IdentityMemo(Generic[S, T]):
    """``make(source)``, made once per source object among the last ``size``.

    For objects handed out to many (a cached payload, a live flow, a shared result): each
    consumer gets the same made value. Nothing made here may be mutated.
    """

    def __init__(self, make: Callable[[S], T], size: int) -> None:
        self._make = make
        self._size = size
        # The source is kept with its value: while it is here, its id cannot be reused.
        self._made: OrderedDict[int, tuple[S, T]] = OrderedDict()

    def __call__(self, source: S) -> T:
        found = self._made.get(id(source))
        if found is not None and found[0] is source:
            return found[1]
        value = self._make(source)
        self._made[id(source)] = (source, value)
        if len(self._made) > self._size:
            self._made.popitem(last=False)
        return value
