"""Time windows: the lengths a client may ask for, and a window ending at a moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

__all__ = ["DEFAULT_WINDOW", "Span", "TimeWindow"]


class TimeWindow(Enum):
    """The windows a client may ask for; the value is what it writes (``"24h"``)."""

    H1 = "1h"
    H6 = "6h"
    H12 = "12h"
    H24 = "24h"

    @property
    def length(self) -> timedelta:
        return timedelta(hours=int(self.value.removesuffix("h")))


DEFAULT_WINDOW = TimeWindow.H24


@dataclass(frozen=True, slots=True)
class Span:
    """A window ending at ``as_of``: it holds ``start < timestamp <= as_of``; the window before
    it (for velocities and first sightings) holds ``previous_start < timestamp <= start``."""

    window: TimeWindow
    as_of: datetime

    @property
    def start(self) -> datetime:
        return self.as_of - self.window.length

    @property
    def previous_start(self) -> datetime:
        """The window just before this one holds ``previous_start < timestamp <= start``."""
        return self.as_of - 2 * self.window.length
