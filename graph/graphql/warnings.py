"""The service's warnings (a truncated answer, partial data) in a response's extensions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from strawberry.extensions import SchemaExtension

# The running operation's warnings. Per operation, not on the Context: a WebSocket's context
# serves all of its operations, each of which runs in a task (a context) of its own.
_current: ContextVar[list[str] | None] = ContextVar("graphql_warnings", default=None)


def warn(messages: Iterable[str]) -> None:
    """Add to the running operation's warnings."""
    warnings = _current.get()
    if warnings is not None:
        warnings.extend(messages)


@contextlib.contextmanager
def collecting_warnings() -> Iterator[list[str]]:
    """The warnings of the operation run inside the block."""
    warnings: list[str] = []
    token = _current.set(warnings)
    try:
        yield warnings
    finally:
        _current.reset(token)


class Warnings(SchemaExtension):
    """Collect an operation's warnings and put them in its response's extensions."""

    def on_operation(self) -> Iterator[None]:
        self._warnings: list[str] = []
        _current.set(self._warnings)
        yield

    def get_results(self) -> dict[str, Any]:
        return warnings_extensions(getattr(self, "_warnings", None))


def warnings_extensions(warnings: list[str] | None) -> dict[str, Any]:
    """What an operation's warnings add to its response's extensions: nothing when none."""
    return {"warnings": list(warnings)} if warnings else {}
