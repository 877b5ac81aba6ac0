"""Domain errors. Each knows its HTTP status and its stable ``error`` code.

    TrendmapError (500 internal_error)
    ├── BadRequest (400 bad_request)
    │   ├── InvalidParameter (400 invalid_parameter): one query parameter, named in ``field``
    │   ├── InvalidRecords (400 invalid_records): a batch, every problem with its index and field
    │   └── MalformedBody (400 malformed_body): not JSON, or not the shape the endpoint takes
    ├── Unauthenticated (401 unauthenticated)
    ├── Forbidden (403 forbidden)
    ├── NotFound (404 not_found)
    ├── MethodNotAllowed (405 method_not_allowed)
    ├── PayloadTooLarge (413 payload_too_large)
    ├── RateLimited (429 rate_limited): carries ``retry_after`` seconds
    ├── LimitExceeded (429 limit_exceeded): a per-connection limit, such as subscriptions
    ├── DependencyUnavailable (503 dependency_unavailable): the database (or another store) is down
    └── Overloaded (503 overloaded): this worker is at capacity; carries ``retry_after`` seconds
        └── TooManyConnections (503 too_many_connections): WebSockets, WS_MAX_CONNECTIONS

HTTP writes every one of them through graph.http.errors; GraphQL shows their message and
``extensions`` and masks every other exception. Lower-layer errors are translated where they
are caught: ``raise DependencyUnavailable(...) from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_CLASSIFICATIONS = {
    400: "BAD_USER_INPUT",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "BAD_REQUEST",
    413: "BAD_REQUEST",
    429: "BAD_REQUEST",
    503: "SERVICE_UNAVAILABLE",
}


class TrendmapError(Exception):
    """Base of every error a client may see."""

    status = 500
    code = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def extra(self) -> dict[str, Any]:
        """Fields beyond error/detail/request_id/timestamp for the error document."""
        return {}

    @property
    def extensions(self) -> dict[str, Any]:
        """What GraphQL shows in the error's ``extensions`` (graphql-core reads this name):
        our ``code`` and ``status``, and the conventional ``classification`` that GraphQL
        clients and tools read to tell a refused request from a server failure."""
        return {
            "code": self.code,
            "status": self.status,
            "classification": _CLASSIFICATIONS.get(self.status, "INTERNAL_SERVER_ERROR"),
            **self.extra(),
        }


class BadRequest(TrendmapError):
    status = 400
    code = "bad_request"


class InvalidParameter(BadRequest):
    code = "invalid_parameter"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field

    def extra(self) -> dict[str, Any]:
        return {"field": self.field}


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """One rule one record broke: ``index`` in the batch (or line number), ``field``, why."""

    index: int
    field: str
    message: str


class InvalidRecords(BadRequest):
    code = "invalid_records"

    def __init__(self, problems: list[RecordProblem], *, where: str = "record") -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(
            f"{where} {first.index}: {first.field}: {first.message}{more}; nothing was stored"
        )
        self.problems = problems
        self.where = where

    def extra(self) -> dict[str, Any]:
        return {
            "errors": [
                {self.where: p.index, "field": p.field, "message": p.message} for p in self.problems
            ]
        }


class MalformedBody(BadRequest):
    code = "malformed_body"


class Unauthenticated(TrendmapError):
    status = 401
    code = "unauthenticated"


class Forbidden(TrendmapError):
    status = 403
    code = "forbidden"


class NotFound(TrendmapError):
    status = 404
    code = "not_found"


class MethodNotAllowed(TrendmapError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(TrendmapError):
    status = 413
    code = "payload_too_large"


class RateLimited(TrendmapError):
    status = 429
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class LimitExceeded(TrendmapError):
    status = 429
    code = "limit_exceeded"


class DependencyUnavailable(TrendmapError):
    status = 503
    code = "dependency_unavailable"


class Overloaded(TrendmapError):
    status = 503
    code = "overloaded"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class TooManyConnections(Overloaded):
    code = "too_many_connections"
