"""OperationCache: whole GraphQL answers to repeated queries, kept as the bytes sent.

A query asked again the same way is answered from the bytes of its first answer, before
anything is parsed, validated or executed. The key holds everything the answer depends on:

- the document's SHA-256 and the operation name;
- the variables, as canonical JSON (sorted keys);
- the credential's class (anonymous, read, write): answers are never shared across classes;
- the response cache's generation, as every cached read takes it (one store read, or the
  local copy's generation within ``CACHE_LOCAL_SECONDS`` of the last one), so an ingest on
  any worker retires every kept answer;
- the countries whose feed is failing (the answer's "partial data" warnings).

Kept: queries whose every root field is in ``CACHEABLE_FIELDS``, answered without errors. An
answer holding a window ending "now" (``flows``, ``hotspots``, ``flowStats`` without ``asOf``)
expires ``FLOWS_REFRESH_SECONDS`` after the service computed it, as the service's own entry
does. Bounded per worker by entries and bytes (``GRAPHQL_RESPONSE_CACHE_ENTRIES``,
``GRAPHQL_RESPONSE_CACHE_BYTES``), least recently used first; off with ``USE_CACHE=false``,
and for a request whose generation cannot be read (the store is down) or whose credential is
not valid (it gets its 401 the usual way).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
    get_operation_ast,
)
from starlette.requests import HTTPConnection
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from graph.auth import header_credential
from graph.cache.lru import BoundedLRU
from graph.cache.response_cache import ResponseCache
from graph.core.errors import InvalidParameter, TrendmapError
from graph.graphql.context import MIN_GENERATION_HEADER
from graph.http.prebuilt import GRAPHQL_KIND
from graph.service.params import parse_min_generation
from graph.wiring import AppState

# Root fields whose answers change only with the generation, or (windows ending "now") whose
# resolvers note when their answer was computed (``note_sliding``). The exploring fields
# (topics, topicSpread, hotspotHistory) do not note it yet, so they are never kept here.
CACHEABLE_FIELDS = frozenset(
    {"flows", "flowStats", "hotspots", "trends", "dataSpan", "__typename", "__schema", "__type"}
)
# Each entry counts its body, its variables and about this much for its key and bookkeeping.
_ENTRY_OVERHEAD = 300

Key = tuple[str, str | None, bytes, str, str, str]


@dataclass(slots=True)
class OperationRecord:
    """What running one HTTP operation showed about keeping its answer."""

    operations: int = 0
    cacheable: bool = False
    # The earliest computation time of a window ending "now" that the answer holds.
    oldest_sliding: datetime | None = None
    # The document of a query that reached execution: it passed every check (for
    # graph.graphql.prepared), whether or not its execution met errors.
    query_document: DocumentNode | None = None

    def expires_at(self, refresh_seconds: float) -> float | None:
        """Wall-clock time after which the answer is too old; None: only the generation ends it."""
        if self.oldest_sliding is None:
            return None
        return self.oldest_sliding.timestamp() + refresh_seconds


_recording: ContextVar[OperationRecord | None] = ContextVar("graphql_recording", default=None)


def note_sliding(computed_at: datetime) -> None:
    """A resolver's answer is a window ending "now", computed at ``computed_at``."""
    record = _recording.get()
    if record is not None and (
        record.oldest_sliding is None or computed_at < record.oldest_sliding
    ):
        record.oldest_sliding = computed_at


@dataclass(slots=True)
class _Entry:
    body: bytes
    expires_at: float | None
    label: object = None  # the metrics label of the operation (graph.observability.metrics)
    oldest_sliding: datetime | None = None  # (OperationRecord's)


@dataclass(slots=True)
class Lookup:
    """A request's key and, on a hit, the answer kept under it."""

    key: Key
    body: bytes | None = None
    label: object = None
    oldest_sliding: datetime | None = None

    @property
    def generation(self) -> str:
        """The generation the answer is (or would be) kept under."""
        return self.key[4]


@dataclass
class OperationCache:
    """Answers by key, least recently used first, within ``max_entries`` and ``max_bytes``."""

    max_entries: int
    max_bytes: int
    refresh_seconds: float
    _entries: BoundedLRU[Key, _Entry] = field(init=False)
    hits: int = 0
    misses: int = 0
    stored: int = 0

    def __post_init__(self) -> None:
        self._entries = BoundedLRU(max_entries=self.max_entries, max_bytes=self.max_bytes)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held_bytes(self) -> int:
        """What the entries count for."""
        return self._entries.bytes

    async def lookup(
        self,
        connection: HTTPConnection,
        state: AppState,
        document_hash: str,
        operation_name: object,
        variables: object,
    ) -> Lookup | None:
        """The request's key and the kept answer, if any; None when the request's answer may
        not be kept or served from here at all."""
        if not self.max_entries or not state.cache.enabled:
            return None
        if not isinstance(operation_name, str | None) or not isinstance(variables, dict | None):
            return None  # Strawberry refuses them
        credential = credential_class(connection, state)
        if credential is None:
            return None
        generation = await current_generation(state.cache)
        if generation is None or not _reaches(connection, generation):
            return None
        failing = "|".join(await state.service.partial_warnings(None))
        canonical = orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS)
        key = (document_hash, operation_name, canonical, credential, generation, failing)
        entry = self._entries.get(key)
        # Counted with the response cache's lookups too: a prebuilt answer served instead
        # (graph.http.middleware.fast_path.note_hit) is a hit of the same kind.
        if entry is not None and (entry.expires_at is None or time.time() < entry.expires_at):
            self.hits += 1
            state.cache.lookups[GRAPHQL_KIND, True] += 1
            return Lookup(key, entry.body, entry.label, entry.oldest_sliding)
        if entry is not None:
            self._entries.pop(key)
        self.misses += 1
        state.cache.lookups[GRAPHQL_KIND, False] += 1
        return Lookup(key)

    def keep(self, key: Key, body: bytes, record: OperationRecord, label: object) -> bool:
        """Keep an answer if its operation may be kept and it is not too old already; whether
        it was kept."""
        if not record.cacheable or record.operations != 1:
            return False
        expires_at = record.expires_at(self.refresh_seconds)
        if expires_at is not None and expires_at <= time.time():
            return False
        size = len(body) + len(key[2]) + len(key[5]) + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return False  # and what the key holds stays
        entry = _Entry(body, expires_at, label, record.oldest_sliding)
        kept = self._entries.put(key, entry, size)
        self.stored += 1
        return kept

    def recording(self) -> _Recording:
        """Record what the operations run inside the block show (OperationRecorder)."""
        return _Recording()


class _Recording:
    def __enter__(self) -> OperationRecord:
        self.record = OperationRecord()
        self._token = _recording.set(self.record)
        return self.record

    def __exit__(self, *_: object) -> None:
        _recording.reset(self._token)


def document_hash(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


async def current_generation(cache: ResponseCache) -> str | None:
    """The response cache's current generation, or None when its store cannot say.

    The one place the GraphQL answer cache reads the generation. With ``CACHE_LOCAL_SECONDS``
    > 0 it follows the local copy's rule, as the REST fast path does: the generation last read
    from the store is taken as current for that long after the read (an ingest here or another
    worker's announcement ends it at once); otherwise, and in strict mode, one store read.
    """
    trusted = cache.local_copy.trusted_token()
    if trusted is not None:
        return trusted
    epoch = cache.local_copy.epoch
    following = await cache.next_generation()
    if following is None:
        return None
    generation = str(following - 1)
    if cache.store is not None:
        cache.local_copy.trust(epoch, generation)
    return generation


def _reaches(connection: HTTPConnection, generation: str) -> bool:
    """Whether answers of ``generation`` hold every write the request's
    X-Trendmap-Min-Generation asks for (a malformed header: no, the resolvers refuse it)."""
    asked = connection.headers.getlist(MIN_GENERATION_HEADER)
    if not asked:
        return True
    try:
        wanted = [parse_min_generation(value) for value in asked]
    except InvalidParameter:
        return False
    return generation.isdigit() and all(g is None or g <= int(generation) for g in wanted)


def credential_class(connection: HTTPConnection, state: AppState) -> str | None:
    """``anonymous``, ``none``, ``read`` or ``write`` (what the request's credential may do);
    None when it carries one that is not valid."""
    try:
        found = header_credential(connection.headers.get("authorization"), state.settings)
    except TrendmapError:
        return None
    return "anonymous" if found is None else found[1].name.lower()


class OperationRecorder(SchemaExtension):
    """Note, for the HTTP request running it, whether an operation's answer may be kept: a
    query, every root field in CACHEABLE_FIELDS, no error."""

    def on_execute(self) -> Iterator[None]:
        yield
        record = _recording.get()
        if record is None:
            return
        record.operations += 1
        context = self.execution_context
        result = context.result
        query = context.operation_type is OperationType.QUERY
        if query:
            record.query_document = context.graphql_document
        record.cacheable = (
            query
            and result is not None
            and not getattr(result, "errors", None)
            and context.graphql_document is not None
            and cacheable_fields(context.graphql_document, context.operation_name)
        )


def cacheable_fields(document: DocumentNode, operation_name: str | None) -> bool:
    """Whether every root field of the operation is one of CACHEABLE_FIELDS."""
    return _root_fields(document, operation_name) <= CACHEABLE_FIELDS


def _root_fields(document: DocumentNode, operation_name: str | None) -> frozenset[str]:
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return frozenset({""})
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    names: set[str] = set()
    _collect(operation.selection_set, fragments, names, frozenset())
    return frozenset(names)


def _collect(
    selections: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    names: set[str],
    inside: frozenset[str],
) -> None:
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            _collect(selection.selection_set, fragments, names, inside)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in inside:
                _collect(fragment.selection_set, fragments, names, inside | {name})
