"""Error tracking: real bugs to Sentry when ``SENTRY_DSN`` is set (``trendmap[sentry]``).

Only what our code already calls a bug is sent, through :func:`report_exception`: an error
that escapes a request (the 500 path), an exception a GraphQL resolver raised that is masked,
a background task, a poll round or a feed that crashed. Client mistakes (4xx, GraphQL request
errors, domain errors, rate limits) never are. Nothing else captures on its own: the SDK's
logging integration is off and its auto-enabling integrations are not loaded.

What an event holds: the exception and its stack without local variables, our tags (request
id, route or GraphQL operation, worker), and the SDK's runtime context. Never request bodies,
query variables, cookies or credentials: ``send_default_pii`` is off (the SDK's default),
bodies are never read, and ``before_send`` filters credential headers and anything that looks
like a token or equals a configured key, wherever it appears in the event.

With ``SENTRY_DSN`` unset, :func:`report_exception` is a no-op and ``sentry_sdk`` is never
imported.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graph.settings import Settings

__all__ = ["report_exception", "setup_sentry", "shutdown_sentry"]

FILTERED = "[Filtered]"
# Request headers that carry credentials or session state.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)
# A bearer credential or anything shaped like a JWT (three base64url parts, "eyJ" header).
_TOKENS = re.compile(
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+|\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
)

_capture: Callable[[BaseException, Mapping[str, str | None]], None] | None = None


def report_exception(exc: BaseException, **tags: str | None) -> None:
    """Send a real bug to Sentry, once, with these tags (``None`` values left out); a no-op
    when Sentry is off."""
    if _capture is not None:
        _capture(exc, tags)


def worker() -> str:
    """This worker's name in events: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _scrubber(secrets: tuple[str, ...]) -> Callable[[Any], Any]:
    """A function that returns a value with every token and configured secret filtered out,
    recursively through dicts and lists."""
    words = tuple(s for s in secrets if len(s) >= 4)

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            for word in words:
                value = value.replace(word, FILTERED)
            return _TOKENS.sub(FILTERED, value)
        if isinstance(value, Mapping):
            return {key: scrub(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [scrub(item) for item in value]
        return value

    return scrub


def before_send(secrets: tuple[str, ...]) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The ``before_send`` hook: no request body, cookies or credential headers, and no token
    or configured secret anywhere in the event."""
    scrub = _scrubber(secrets)

    def hook(event: dict[str, Any], _hint: Any) -> dict[str, Any]:
        request = event.get("request")
        if isinstance(request, dict):
            request.pop("data", None)
            request.pop("cookies", None)
            headers = request.get("headers")
            if isinstance(headers, Mapping):
                request["headers"] = {
                    name: FILTERED if name.lower() in _SECRET_HEADERS else value
                    for name, value in headers.items()
                }
        scrubbed: dict[str, Any] = scrub(event)
        return scrubbed

    return hook


def _secrets(settings: Settings) -> tuple[str, ...]:
    jwt_secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    return (*settings.api_keys, *settings.read_api_keys, jwt_secret)


def setup_sentry(settings: Settings) -> bool:
    """Start the SDK when ``SENTRY_DSN`` is set; True when it is on. Imports ``sentry_sdk`` only
    then (Settings has already refused a DSN without the extra installed)."""
    global _capture
    if not settings.sentry_dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    integrations: list[Any] = [LoggingIntegration(level=None, event_level=None)]
    if settings.sentry_traces_sample_rate > 0:
        # Transactions per request; it captures nothing itself (no status counts as failed).
        from sentry_sdk.integrations.starlette import StarletteIntegration

        integrations.append(StarletteIntegration(failed_request_status_codes=set()))
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.sentry_environment,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        profiles_sample_rate=settings.sentry_profiles_sample_rate,
        # send_default_pii stays unset, which is False (setting it is deprecated since 2.x):
        # no user, cookies or client address, and the SDK's own scrubber stays on.
        include_local_variables=False,  # locals hold records, documents and tokens
        max_request_body_size="never",
        auto_enabling_integrations=False,
        integrations=integrations,
        server_name=socket.gethostname(),
        before_send=before_send(_secrets(settings)),  # type: ignore[arg-type]
    )

    def capture(exc: BaseException, tags: Mapping[str, str | None]) -> None:
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("worker", worker())
            for name, value in tags.items():
                if value is not None:
                    scope.set_tag(name, value)
            scope.capture_exception(exc)

    _capture = capture
    return True


def shutdown_sentry(timeout: float = 2.0) -> None:
    """Send what is queued and stop reporting (a no-op when Sentry is off)."""
    global _capture
    if _capture is None:
        return
    _capture = None
    import sentry_sdk

    sentry_sdk.get_client().close(timeout)  # sends what is queued first
    # No client at all (init(None) would load the SDK's default integrations).
    sentry_sdk.get_global_scope().set_client(None)
