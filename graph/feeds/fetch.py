"""Fetcher: one feed call over the shared ``httpx.AsyncClient``, with a deadline per attempt,
tenacity retries (backoff with jitter, or the server's ``Retry-After``) and a size cap counted
after decompression. Whatever fails, the caller gets a
:class:`~graph.feeds.sources.FeedError`, never an httpx exception (docs/architecture.md,
"Feeds", has the policy)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential, wait_random

from graph.feeds.sources import FeedMalformed, FeedRefused, FeedTooLarge, FeedUnavailable

_RETRY_AFTER_STATUSES = frozenset({429, 503})
# Everything httpx raises. StreamError and InvalidURL are not HTTPError subclasses.
_HTTPX_ERRORS = (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL)


def user_agent() -> str:
    try:
        return f"trendmap/{version('trendmap')}"
    except PackageNotFoundError:  # pragma: no cover - run from a tree that was never installed
        return "trendmap"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class _Transient(Exception):
    """An attempt failed in a way the next attempt may not."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Fetcher:
    """GETs feed documents through ``client``; see the module's docstring for the rules."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        timeout_seconds: float,
        max_attempts: int = 3,
        backoff_seconds: float = 1.0,
        retry_after_max_seconds: float = 60.0,
        max_bytes: int = 2 * 1024 * 1024,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.retry_after_max_seconds = retry_after_max_seconds
        self.max_bytes = max_bytes
        # backoff, 2 x backoff, ... (at most 8 x), plus up to one backoff of jitter.
        self._backoff = wait_exponential(
            multiplier=backoff_seconds, max=backoff_seconds * 8
        ) + wait_random(0, backoff_seconds)
        self._sleep = sleep

    async def get(self, url: str, *, extensions: dict[str, object] | None = None) -> bytes:
        """The body of a 2xx answer to GET ``url``, or a FeedError saying why not."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(self._worth_retrying),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(url, extensions or {})
        except _Transient as exc:
            tries = retrying.statistics.get("attempt_number", 1)
            plural = "s" if tries > 1 else ""
            raise FeedUnavailable(f"{exc} (after {tries} attempt{plural})") from None
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _worth_retrying(self, exc: BaseException) -> bool:
        if not isinstance(exc, _Transient):
            return False
        return exc.retry_after is None or exc.retry_after <= self.retry_after_max_seconds

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return exc.retry_after
        return float(self._backoff(state))

    async def _attempt(self, url: str, extensions: dict[str, object]) -> bytes:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await self._read(url, extensions)
        except TimeoutError:
            raise _Transient(f"no complete answer within {self.timeout_seconds:g} s") from None
        except httpx.TransportError as exc:  # the network: the next attempt may get through
            raise _Transient(_describe(exc)) from None
        except httpx.DecodingError as exc:
            raise FeedMalformed(f"the body could not be decoded ({_describe(exc)})") from None
        except _HTTPX_ERRORS as exc:  # too many redirects, a URL httpx cannot send, ...
            raise FeedRefused(_describe(exc)) from None

    async def _read(self, url: str, extensions: dict[str, object]) -> bytes:
        async with self.client.stream("GET", url, extensions=extensions) as response:
            status = response.status_code
            if status == 429 or status >= 500:
                retry_after = (
                    parse_retry_after(response.headers.get("retry-after"))
                    if status in _RETRY_AFTER_STATUSES
                    else None
                )
                raise _Transient(f"HTTP {status}", retry_after)
            if status >= 400:
                raise FeedRefused(f"HTTP {status}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise FeedTooLarge(f"{declared} bytes declared, over the {self.max_bytes} allowed")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise FeedTooLarge(f"over the {self.max_bytes} bytes allowed")
                chunks.append(chunk)
            return b"".join(chunks)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def make_client(
    timeout_seconds: float, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one client every feed call shares (its connection pool, its headers)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=True,
        headers={
            "User-Agent": user_agent(),
            "Accept": (
                "application/rss+xml, application/xml;q=0.9, application/json;q=0.9, */*;q=0.5"
            ),
        },
        transport=transport,
    )
