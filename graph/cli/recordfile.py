"""Record files for ``trendmap ingest``: JSON Lines or CSV, read lazily with line numbers.

CSV needs a header row naming the record fields; ``sources`` is a JSON array or
``|``-separated values. Each item comes with its line number, so bad lines can be reported.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

CSV_FIELDS = ("timestamp", "country", "topic_label", "count", "confidence", "sources")


@dataclass(frozen=True, slots=True)
class Line:
    """One record's raw fields, or why the line could not be read as a record."""

    number: int
    fields: dict[str, Any] | None
    error: str | None = None


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    raise ValueError(
        f"cannot tell the format of {path.name}: name it .jsonl or .csv, or pass --format"
    )


def read_lines(stream: TextIO, fmt: str) -> Iterator[Line]:
    """The records of a stream, one :class:`Line` each (blank lines are skipped)."""
    if fmt == "csv":
        yield from _csv(stream)
    else:
        yield from _jsonl(stream)


def _jsonl(stream: TextIO) -> Iterator[Line]:
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Line(number, None, f"not valid JSON ({exc.msg})")
            continue
        if not isinstance(value, dict):
            yield Line(number, None, "a line must hold one JSON object")
            continue
        yield Line(number, value)


def _csv(stream: TextIO) -> Iterator[Line]:
    reader = csv.DictReader(stream)
    missing = [f for f in CSV_FIELDS[:5] if f not in (reader.fieldnames or [])]
    if missing:
        yield Line(1, None, f"the CSV header lacks {', '.join(missing)}")
        return
    for row in reader:
        yield Line(reader.line_num, _typed(row))


def _typed(row: dict[str, str | None]) -> dict[str, Any]:
    # CSV has only strings: convert what converts and leave the rest for validation to name.
    fields: dict[str, Any] = dict(row)
    for name, kind in (("count", int), ("confidence", float)):
        try:
            fields[name] = kind(str(row.get(name)).strip())
        except ValueError:
            pass
    sources = (row.get("sources") or "").strip()
    if not sources:
        fields["sources"] = None
    elif sources.startswith("["):
        try:
            fields["sources"] = json.loads(sources)
        except json.JSONDecodeError:
            pass
    else:
        fields["sources"] = [s.strip() for s in sources.split("|") if s.strip()]
    return fields


def open_text(path: Path) -> TextIO:
    """The file as UTF-8 text (a BOM is tolerated)."""
    return io.TextIOWrapper(path.open("rb"), encoding="utf-8-sig", newline="")
