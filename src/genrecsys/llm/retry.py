"""The one retry layer. Backends raise :class:`TransientError` or :class:`PermanentError`;
:func:`call_with_retry` decides whether and when to try again. Nothing else retries, so
attempts never multiply (an HTTP client's own retries are switched off).

Retried: 408, 409, 429 (honouring ``Retry-After``), 5xx, timeouts, connection resets.
Not retried: other 4xx (400 bad request, 401/403 auth, 404) and quota exhaustion, which
no amount of waiting fixes.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Callable, Mapping, TypeVar

T = TypeVar("T")


class TransientError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """A failure that retrying will not fix; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str = "", status: int | None = None):
        super().__init__(message)
        self.status = status

    def __reduce__(self):  # keep `status` across process boundaries
        return (type(self), (str(self), self.status))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped; a server's Retry-After wins but is capped too.

    >>> [RetryPolicy(jitter=False).backoff(a) for a in (1, 2, 3)]
    [0.5, 1.0, 2.0]
    """

    max_attempts: int = 5
    base_s: float = 0.5
    max_backoff_s: float = 20.0
    max_retry_after_s: float = 60.0
    jitter: bool = True

    def backoff(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_retry_after_s))
        wait = min(self.max_backoff_s, self.base_s * 2 ** (attempt - 1))
        if self.jitter:
            wait *= 0.5 + 0.5 * (rng or random).random()
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date).

    >>> parse_retry_after("2"), parse_retry_after(None), parse_retry_after("soon")
    (2.0, None, None)
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


_QUOTA_MARKERS = ("insufficient_quota", "quota", "billing")


def classify_http(status: int, headers: Mapping[str, str], body: str) -> Exception:
    """The exception a non-2xx response maps to."""
    snippet = body.strip().replace("\n", " ")[:200]
    msg = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
    if status == 429 and any(m in body.lower() for m in _QUOTA_MARKERS):
        return PermanentError(msg, status)
    if status in (408, 409, 429) or status >= 500:
        return TransientError(msg, parse_retry_after(headers.get("retry-after")))
    return PermanentError(msg, status)


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy, *, sleep: Callable[[float], None] = time.sleep,
                    rng: random.Random | None = None) -> tuple[T, int]:
    """Run ``fn`` until it succeeds, fails permanently, or attempts run out.

    Returns ``(result, attempts)``; raises the last error (annotated with the attempt count).
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(), attempt
        except PermanentError as exc:
            exc.attempts = attempt  # type: ignore[attr-defined]
            raise
        except TransientError as exc:
            if attempt >= policy.max_attempts:
                exc.attempts = attempt  # type: ignore[attr-defined]
                raise
            sleep(policy.backoff(attempt, exc.retry_after, rng))
