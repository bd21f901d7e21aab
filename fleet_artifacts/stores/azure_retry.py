"""Retry policy for the Blob Storage client: fail fast when unreachable, back off honestly when busy.

What the SDK does by itself (azure-storage-blob 12.31, ``_shared/policies.py`` and
``policies_async.py``; azure-core 1.41), and what this module relies on:

- ``BlobServiceClient`` (aio) builds ``ExponentialRetry(**kwargs)`` unless given ``retry_policy``;
  container and blob clients share that pipeline.
- ``StorageRetryPolicy.send`` catches ``AzureError`` (no response) and retryable responses
  (``is_retry``: 408, any 5xx but 501/505; not 429, which Azure Storage does not send for
  throttling: it answers 503 ``ServerBusy`` or 500 ``OperationTimedOut``), then calls
  ``increment(settings, request, response=..., error=...)`` and, if that returns True,
  ``await sleep(settings, transport)``, which sleeps ``get_backoff_time(settings)``.
- ``increment`` decrements ``total`` always, ``connect`` for ``ServiceRequestError`` (the request
  never reached the server: refused, DNS failure, and ``ServiceRequestTimeoutError``, the
  aiohttp connect timeout), ``read`` for ``ServiceResponseError`` (the connection broke or timed
  out mid-response), ``status`` for a response; it is exhausted once any non-zero counter is
  below 0 (``is_exhausted``), and increments ``settings["count"]`` when it retries.
- ``ExponentialRetry.get_backoff_time`` is ``initial_backoff (15) + increment_base (3) ** count``
  +-3 s of jitter for every retry, connection errors included: with ``retry_total=3`` an
  unreachable endpoint answered only after about 87 s (issue 15). It never reads Retry-After.
- The transport's connect timeout is the ``connection_timeout`` kwarg (``ConnectionConfiguration``;
  the storage client sets 20 s by default, ``read_timeout`` 60 s), aiohttp's ``sock_connect``.

``FailFastRetry`` keeps the SDK's loop and counters and changes only the waits: errors without a
response wait ``connect_backoff`` (0.5 s, then 1 s, ...), and a connection error is not retried
once ``connect_budget`` seconds have passed since the first attempt; a response the SDK retries
(throttling, server busy) waits what the server asked for (``x-ms-retry-after-ms`` or
``Retry-After``, capped at ``MAX_RETRY_AFTER``), else the SDK's exponential backoff.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core.exceptions import ServiceRequestError
from azure.storage.blob.aio import ExponentialRetry

MAX_RETRY_AFTER = 60.0  # seconds: a server asking for longer gets a 503 sooner rather than a hung client
_STARTED = "fleet_started"  # keys this policy adds to the SDK's per-request retry settings
_NO_RESPONSE = "fleet_no_response"
_RETRY_AFTER = "fleet_retry_after"


def retry_after_seconds(headers: Any) -> float | None:
    """The wait a response asks for: ``x-ms-retry-after-ms``, ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be seconds or an HTTP date. None if absent or unreadable.
    """
    for name, scale in (("x-ms-retry-after-ms", 0.001), ("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if not raw:
            continue
        try:
            return max(0.0, float(raw) * scale)
        except ValueError:
            pass
        if scale == 1.0:
            try:
                when = parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                return None
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return None


class FailFastRetry(ExponentialRetry):
    """The storage SDK's ``ExponentialRetry`` with short waits for errors that got no response.

    Args:
        retry_total: Retries of a throttled or failed response (``status``), as before.
        connect_retries: Retries of an error without a response (``connect`` and ``read``).
        connect_budget: No retry of a connection error (``ServiceRequestError``) once this many
            seconds have passed since the first attempt (the connect timeout: an endpoint that
            swallows connections costs about one timeout, not ``connect_retries`` of them). Read
            errors (a response cut short) are not bounded so: a long block upload may take longer.
        connect_backoff: First wait after such an error; it doubles for each retry.
    """

    def __init__(
        self,
        *,
        retry_total: int,
        connect_retries: int,
        connect_budget: float,
        connect_backoff: float = 0.5,
    ) -> None:
        super().__init__(
            retry_total=retry_total + connect_retries,  # the SDK's overall cap: never the binding one
            retry_connect=connect_retries,
            retry_read=connect_retries,
            retry_status=retry_total,
        )
        self.connect_budget = connect_budget
        self.connect_backoff = connect_backoff

    def configure_retries(self, request: Any) -> dict[str, Any]:
        """The SDK's per-request settings, plus when the first attempt started."""
        settings: dict[str, Any] = super().configure_retries(request)
        settings[_STARTED] = time.monotonic()
        settings[_NO_RESPONSE] = False
        settings[_RETRY_AFTER] = None
        return settings

    def increment(
        self, settings: dict[str, Any], request: Any, response: Any = None, error: Any = None
    ) -> bool:
        """Count the retry as the SDK does; refuse it when a no-response error is out of time."""
        settings[_NO_RESPONSE] = response is None
        settings[_RETRY_AFTER] = None if response is None else retry_after_seconds(response.headers)
        if not super().increment(settings, request, response=response, error=error):
            return False
        if isinstance(error, ServiceRequestError):  # never reached the server: bounded in time
            waited: float = time.monotonic() - settings[_STARTED]
            return waited + self.get_backoff_time(settings) < self.connect_budget
        return True

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        """Seconds to wait before the next attempt (``settings["count"]`` retries so far, >= 1)."""
        if settings.get(_NO_RESPONSE):
            return float(self.connect_backoff * 2 ** max(0, settings["count"] - 1))
        retry_after = settings.get(_RETRY_AFTER)
        if retry_after is not None:
            return float(min(retry_after, MAX_RETRY_AFTER))
        return float(super().get_backoff_time(settings))
