"""When to send a request again, and how long to wait first (shared by both clients).

Retried: connection failures and the answers that mean "not now" (429, 503), at most
``attempts`` times in all, waiting ``Retry-After`` when the service says so, else an
exponential backoff with jitter. A failure after the request may have reached the
service is retried only when repeating it cannot do a thing twice: reads, deletes,
and creates carrying an ``Idempotency-Key``. No other 4xx is ever retried.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRY_STATUSES = frozenset({429, 503})


def not_now(response: httpx.Response) -> bool:
    """An answer that means "ask again later": 429, 503, or a 409 with Retry-After.

    The service sends the last for a create whose Idempotency-Key another request still holds
    (a retry that overtook the first attempt): the same request will answer once that one ends.
    """
    return response.status_code in RETRY_STATUSES or (
        response.status_code == 409 and "retry-after" in response.headers
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try.

    Attributes:
        attempts: tries in all, the first included (1: never retry).
        backoff: the first wait in seconds when the service gives no Retry-After; doubles each time.
        max_backoff: the longest such wait.
        max_retry_after: the longest Retry-After honoured; a longer one is waited this long.
        jitter: fraction of each backoff drawn at random (spreads a fleet's retries apart).
    """

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 20.0
    max_retry_after: float = 120.0
    jitter: float = 0.5

    def backoff_delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0 for the first) when no Retry-After was given."""
        base = min(self.max_backoff, self.backoff * (2.0**retry))
        # Random only spreads clients apart; it protects nothing, hence no secrets module.
        return base * (1 - self.jitter * random.random())  # noqa: S311

    def delay(self, retry: int, response: httpx.Response | None) -> float:
        """The wait before retry number ``retry``, honouring the answer's Retry-After."""
        if response is not None:
            after = retry_after(response.headers.get("retry-after"))
            if after is not None:
                return min(after, self.max_retry_after)
        return self.backoff_delay(retry)


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# Failures raised before a byte of the request left: always safe to send again.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def retryable_failure(exc: Exception, *, repeatable: bool) -> bool:
    """Whether a transport failure may be retried; ``repeatable``: repeating the request is harmless."""
    if isinstance(exc, NOT_SENT):
        return True
    return repeatable and isinstance(exc, httpx.TransportError)
