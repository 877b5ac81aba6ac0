"""Persisted queries: Apollo's Automatic Persisted Queries (APQ) and the safelist.

A request may name its document by hash instead of sending it: ``extensions: {"persistedQuery":
{"version": 1, "sha256Hash": "<64 hex digits>"}}`` (in a GET, ``extensions`` is a URL-encoded
JSON query parameter).

- The hash alone: the document kept under it runs; an unknown hash answers
  ``PersistedQueryNotFound`` (code ``PERSISTED_QUERY_NOT_FOUND``) with HTTP 200, as Apollo Server
  does and as Apollo Client's persisted-queries link expects (older versions of the link give up
  on APQ for good after a 400), and the client sends the document with its hash once more.
- The hash and the document: the document must hash to it (else 400, ``provided sha does not
  match query``); it is kept and runs.
- Kept documents are bounded: at most ``GRAPHQL_APQ_MAX_DOCUMENTS`` per worker (least recently
  used first), each at most ``CACHED_DOCUMENT_CHARS`` long (a longer one runs but is not kept,
  like the parse cache's). With Redis they are shared by every worker too, under the response
  cache's bounds; a worker that lost one answers PersistedQueryNotFound and the client resends.
- ``GRAPHQL_APQ_MAX_DOCUMENTS=0`` turns APQ off: ``PersistedQueryNotSupported``, also a 200, so
  that clients stop hashing.

The safelist (``GRAPHQL_SAFELIST_FILE``) is a fixed set of documents, read at startup: a JSON
object ``{"<sha256>": "<document>"}``, an Apollo persisted query manifest (``{"operations":
[{"id", "body", ...}]}``), or a directory of ``.graphql`` files (each file's exact text is the
document). With it, only those documents run, by hash or by their full text; anything else, and
APQ registration, is refused with 400 (code ``PERSISTED_QUERY_NOT_ALLOWED``), over HTTP and over
WebSockets.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from graph.cache.response_cache import ResponseCache
from graph.graphql.limits import CACHED_DOCUMENT_CHARS

EXTENSION = "persistedQuery"
_HASH = re.compile(r"[0-9a-fA-F]{64}")
# Kept documents in the store: one hash each, its document in one field.
_STORE_PREFIX = "apq:"
_STORE_FIELD = "document"

NOT_FOUND = "PersistedQueryNotFound"
NOT_SUPPORTED = "PersistedQueryNotSupported"
NOT_ALLOWED = "the operation is not in this server's safelist: send a listed document or its hash"


def sha256_hex(document: str) -> str:
    """The hash APQ names a document by: SHA-256 of its UTF-8 text, in lower-case hex."""
    return hashlib.sha256(document.encode()).hexdigest()


class PersistedQueryError(Exception):
    """A persisted query refused: a GraphQL error with ``code`` and the HTTP ``status``."""

    def __init__(self, message: str, code: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def as_graphql_error(self) -> GraphQLError:
        """The refusal as a request error (graph.graphql.errors: shown as it is, never masked)."""
        return GraphQLError(self.message, extensions=self.extensions)

    @property
    def extensions(self) -> dict[str, object]:
        return {"code": self.code, "status": self.status}


def _not_found() -> PersistedQueryError:
    return PersistedQueryError(NOT_FOUND, "PERSISTED_QUERY_NOT_FOUND", 200)


def _not_allowed() -> PersistedQueryError:
    return PersistedQueryError(NOT_ALLOWED, "PERSISTED_QUERY_NOT_ALLOWED")


@dataclass(frozen=True, slots=True)
class Resolved:
    """The document a request runs and its hash; ``hash`` is None for a plain request when no
    safelist asked for it (nothing needed it)."""

    query: str | None
    hash: str | None


class Safelist:
    """The documents a safelisted server runs, by hash."""

    def __init__(self, documents: Mapping[str, str]) -> None:
        self.documents = dict(documents)

    def __contains__(self, digest: str) -> bool:
        return digest in self.documents

    def get(self, digest: str) -> str | None:
        return self.documents.get(digest)

    @classmethod
    def load(cls, path: Path) -> Safelist:
        """The safelist in ``path`` (see the module's docstring); ValueError naming the file
        and the problem when it cannot be used."""
        try:
            if path.is_dir():
                return cls(_from_directory(path))
            return cls(_from_json(path))
        except OSError as exc:
            raise ValueError(f"GRAPHQL_SAFELIST_FILE: cannot read {path}: {exc}") from exc


def _from_directory(path: Path) -> dict[str, str]:
    documents = {}
    for file in sorted(path.glob("*.graphql")):
        text = file.read_text(encoding="utf-8")
        documents[sha256_hex(text)] = text
    if not documents:
        raise ValueError(f"GRAPHQL_SAFELIST_FILE: no .graphql file in {path}")
    return documents


def _from_json(path: Path) -> dict[str, str]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"GRAPHQL_SAFELIST_FILE: {path} is not JSON: {exc}") from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("operations"), list):
        # Apollo's persisted query manifest: each operation's id is its body's SHA-256.
        pairs = [
            (op.get("id"), op.get("body")) if isinstance(op, dict) else (None, None)
            for op in loaded["operations"]
        ]
    elif isinstance(loaded, dict):
        pairs = list(loaded.items())
    else:
        raise ValueError(f"GRAPHQL_SAFELIST_FILE: {path} must hold a JSON object")
    documents = {}
    for digest, text in pairs:
        if not isinstance(digest, str) or not isinstance(text, str):
            raise ValueError(f"GRAPHQL_SAFELIST_FILE: {path}: every entry is a hash and a text")
        if digest.lower() != sha256_hex(text):
            raise ValueError(
                f"GRAPHQL_SAFELIST_FILE: {path}: {digest[:80]!r} is not the SHA-256 of its document"
            )
        documents[digest.lower()] = text
    return documents


class PersistedQueries:
    """Resolves what a request runs: its own document, or the one its hash names."""

    def __init__(self, *, max_documents: int, safelist: Safelist | None = None) -> None:
        self.max_documents = max_documents
        self.safelist = safelist
        self._documents: OrderedDict[str, str] = OrderedDict()
        # Documents answered from this worker's memory, from the store, and kept.
        self.hits = 0
        self.shared_hits = 0
        self.registered = 0

    def __len__(self) -> int:
        return len(self._documents)

    async def resolve(
        self, query: str | None, extensions: object, cache: ResponseCache | None
    ) -> Resolved:
        """The document to run for a request's ``query`` and ``extensions``;
        PersistedQueryError when it is refused or unknown. ``cache`` shares kept documents
        between workers (through its store, behind its breaker)."""
        persisted = extensions.get(EXTENSION) if isinstance(extensions, dict) else None
        if persisted is None:
            return self._plain(query)
        digest = _checked_hash(persisted)
        if query is None:
            return Resolved(await self._find(digest, cache), digest)
        if sha256_hex(query) != digest:
            raise PersistedQueryError(
                "provided sha does not match query", "PERSISTED_QUERY_HASH_MISMATCH"
            )
        if self.safelist is not None:
            if digest not in self.safelist:
                raise _not_allowed()
        elif self.max_documents:
            await self._keep(digest, query, cache)
        return Resolved(query, digest)

    def _plain(self, query: str | None) -> Resolved:
        if self.safelist is None or query is None:
            return Resolved(query, None)
        digest = sha256_hex(query)
        if digest not in self.safelist:
            raise _not_allowed()
        return Resolved(query, digest)

    async def _find(self, digest: str, cache: ResponseCache | None) -> str:
        if self.safelist is not None:
            listed = self.safelist.get(digest)
            if listed is None:
                raise _not_allowed()
            return listed
        if not self.max_documents:
            raise PersistedQueryError(NOT_SUPPORTED, "PERSISTED_QUERY_NOT_SUPPORTED", 200)
        kept = self._documents.get(digest)
        if kept is not None:
            self._documents.move_to_end(digest)
            self.hits += 1
            return kept
        shared = await _shared(digest, cache)
        if shared is None:
            raise _not_found()
        self._remember(digest, shared)
        self.shared_hits += 1
        return shared

    async def _keep(self, digest: str, query: str, cache: ResponseCache | None) -> None:
        if len(query) > CACHED_DOCUMENT_CHARS or digest in self._documents:
            return
        self._remember(digest, query)
        self.registered += 1
        if cache is not None and cache.enabled and cache.store is not None:
            if cache.store.kind == "redis":
                await cache.write_many([(_STORE_PREFIX + digest, _STORE_FIELD, query.encode())])

    def _remember(self, digest: str, query: str) -> None:
        self._documents[digest] = query
        self._documents.move_to_end(digest)
        while len(self._documents) > self.max_documents:
            self._documents.popitem(last=False)


def _checked_hash(persisted: object) -> str:
    """The ``sha256Hash`` of a ``persistedQuery`` extension, lower case; else a 400."""
    if not isinstance(persisted, dict):
        raise PersistedQueryError(
            "extensions.persistedQuery must be an object", "PERSISTED_QUERY_INVALID"
        )
    version = persisted.get("version")
    if version != 1 or isinstance(version, bool):
        raise PersistedQueryError(
            f"Unsupported persisted query version {version!r}: only version 1 is",
            "PERSISTED_QUERY_VERSION_NOT_SUPPORTED",
        )
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or not _HASH.fullmatch(digest):
        raise PersistedQueryError(
            "extensions.persistedQuery.sha256Hash must be 64 hexadecimal digits",
            "PERSISTED_QUERY_INVALID_HASH",
        )
    return digest.lower()


async def _shared(digest: str, cache: ResponseCache | None) -> str | None:
    """The document another worker kept under ``digest`` (Redis only), checked against it."""
    if cache is None or not cache.enabled or cache.store is None or cache.store.kind != "redis":
        return None
    values = await cache.read_many([(_STORE_PREFIX + digest, _STORE_FIELD)])
    if not values or values[0] is None:
        return None
    try:
        text = values[0].decode()
    except UnicodeDecodeError:
        return None
    return text if sha256_hex(text) == digest else None


class SafelistGuard(SchemaExtension):
    """Refuse any document outside the safelist, whatever carried it (HTTP checks first and
    answers 400; this also covers WebSocket operations). Listed after the validation cache,
    like SingleOperation, so that the validation's errors are set before this adds its own."""

    def __init__(self, *, safelist: Safelist) -> None:
        super().__init__()
        self.safelist = safelist

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if sha256_hex(context.query or "") not in self.safelist:
            errors = context.pre_execution_errors or []
            context.pre_execution_errors = [*errors, _not_allowed().as_graphql_error()]
        yield
