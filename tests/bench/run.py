"""The benchmark suite in one command: every scenario, one table, written to docs/benchmarks.md.

    python -m tests.bench.run                 # everything (a, b and f alone: about 2 min)
    python -m tests.bench.run --quick         # a smoke run: short loads, small data
    python -m tests.bench.run --only a,b,f    # some scenarios

Run it from the repository root (``python tests/bench/run.py`` works too). It needs the local
PostgreSQL (``--admin-url``), ``redis-server`` on PATH and ``wrk``; it says what to install
when one is missing. Each scenario module exposes ``scenarios(args) -> list[Row]`` (and may
add its own options through ``add_arguments(parser)``). A missed target is a row marked
MISSED, and the exit status stays 0; 2 means a scenario could not run at all.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):  # run as a script: make the `tests.bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import (  # noqa: E402
    ADMIN_URL,
    ROOT,
    BenchError,
    Row,
    machine,
    markdown_table,
    print_table,
)

# Scenario letter -> the module that measures it (one module may measure several).
MODULES = {
    "a": "tests.bench.throughput",
    "b": "tests.bench.throughput",
    "c": "tests.bench.compute",
    "d": "tests.bench.ingest",
    "e": "tests.bench.subscribers",
    "f": "tests.bench.throughput",
    "g": "tests.bench.history",
    "h": "tests.bench.soak",
    "i": "tests.bench.consistency",
    "o": "tests.bench.observability",
}
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"


def letters(text: str) -> list[str]:
    chosen = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in MODULES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or text!r}: choose from {','.join(MODULES)}"
        )
    return chosen


def load_modules(wanted: Sequence[str]) -> list[tuple[str, ModuleType | None, str]]:
    """Each distinct module once, in scenario order; (name, module or None, why not)."""
    out: list[tuple[str, ModuleType | None, str]] = []
    for name in dict.fromkeys(MODULES[w] for w in wanted):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            out.append((name, None, f"{name} is not there yet"))
            continue
        except Exception as exc:  # one broken module must not stop the others
            out.append((name, None, f"{name} does not import: {exc!r}"))
            continue
        if not hasattr(module, "scenarios"):
            out.append((name, None, f"{name} has no scenarios(args)"))
            continue
        out.append((name, module, ""))
    return out


def build_parser(modules: Sequence[ModuleType]) -> argparse.ArgumentParser:
    # "resolve": a module may declare a shared option (--admin-url) again; one of them wins.
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], conflict_handler="resolve"
    )
    parser.add_argument(
        "--only", type=letters, default=list(MODULES), help="scenarios, e.g. a,b,f (default all)"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL to create dbs on")
    parser.add_argument("--redis-server", default="redis-server", help="redis-server binary")
    parser.add_argument(
        "--write",
        choices=["auto", "yes", "no"],
        default="auto",
        help="write the table into docs/benchmarks.md (auto: full runs of every scenario)",
    )
    for module in modules:
        add = getattr(module, "add_arguments", None)
        if add is not None:
            add(parser)
    return parser


def write_doc(rows: Sequence[Row], command: str, seconds: float) -> None:
    """Replace the results section of docs/benchmarks.md (everything else stays)."""
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise BenchError(f"{DOC} has no {BEGIN} ... {END} section to replace")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join(
        [
            BEGIN,
            f"Run {stamp}, `{command}`, {seconds / 60:.0f} min. Machine: {machine()}.",
            "",
            markdown_table(rows),
            END,
        ]
    )
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + section + tail)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Options come from the modules, which are imported before parsing: all of them.
    available = load_modules(list(MODULES))
    parser = build_parser([m for _, m, _ in available if m is not None])
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "tests.bench.run", *argv])
    print(f"machine: {machine()}", flush=True)
    started = time.monotonic()
    rows: list[Row] = []
    failed = False
    for name, module, missing in load_modules(args.only):
        covers = ",".join(w for w in args.only if MODULES[w] == name)
        if module is None:
            print(f"\n== {covers}: skipped, {missing}", flush=True)
            rows.append(Row(covers, "not run", "", None, None, "", None, missing))
            continue
        print(f"\n== {covers}: {name}", flush=True)
        began = time.monotonic()
        try:
            found = module.scenarios(args)
        except BenchError as exc:
            print(f"{name} could not run: {exc}", file=sys.stderr, flush=True)
            rows.append(Row(covers, "could not run", "", None, None, "", False, str(exc)[:300]))
            failed = True
            continue
        print(f"   {time.monotonic() - began:.0f} s", flush=True)
        rows += found
    seconds = time.monotonic() - started
    print()
    print_table(rows)
    print(f"\n{len(rows)} rows in {seconds / 60:.1f} min; reproduce: {command}")
    everything = set(args.only) == set(MODULES)
    if args.write == "yes" or (args.write == "auto" and everything and not args.quick):
        write_doc(rows, command, seconds)
        print(f"written to {DOC.relative_to(ROOT)}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
