"""How the service's lines reach stderr: the access line, the audit trail, and (as JSON) every other record.

Two forms, chosen once by ``FLEET_ARTIFACTS_LOG_FORMAT``:

* ``text`` (the default): ``INFO - 2026-12-01 08:00:00,123 - fleet_artifacts.access - GET ... 200 1.2ms``,
  the form of Litestar's own log lines;
* ``json``: one object per line with ``time`` (UTC), ``level``, ``logger``, ``message`` and, while a
  request is served, its ``requestId``; the access line adds ``method``, ``route``, ``status``,
  ``durationMs`` and the caller's ``product``. ``JsonFormatter`` gives every other record that form.

The access and audit lines are written straight to stderr rather than as ``logging`` records:
making a record, finding its caller and formatting its time cost a pointer fetch about a
seventh of its CPU per line. Their loggers' levels still decide whether they are written.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec

from fleet_artifacts.core.audit import request_id

access = logging.getLogger("fleet_artifacts.access")
_encoder = msgspec.json.Encoder()


class _Stamps:
    """The current time as both forms write it, the seconds' part formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._local = ""
        self._utc = ""

    def _tick(self) -> tuple[int, int]:
        stamp = time.time()
        second = int(stamp)
        if second != self._second:
            self._second = second
            self._local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return second, int((stamp - second) * 1000)

    def local(self) -> str:
        """``2026-12-01 08:00:00,123``, as ``logging`` writes ``asctime``."""
        _, millis = self._tick()
        return f"{self._local},{millis:03d}"

    def utc(self) -> str:
        """``2026-12-01T08:00:00.123Z``."""
        _, millis = self._tick()
        return f"{self._utc}.{millis:03d}Z"


_stamps = _Stamps()


def utc_stamp() -> str:
    """Now, as the JSON lines write ``time``: ``2026-12-01T08:00:00.123Z``."""
    return _stamps.utc()


def stderr_lines(text: str) -> None:
    """Write ``text`` and a newline to stderr (as it is now: a test or a caller may swap it)."""
    sys.stderr.write(text + "\n")


def access_line(
    *, json: bool, method: str, route: str, status: int, elapsed_ms: float, rid: str, product: str | None
) -> None:
    """Write one access line, if the access logger is on. Never a query string."""
    if not access.isEnabledFor(logging.INFO):
        return
    message = f"{method} {route} {status} {elapsed_ms:.1f}ms"
    if not json:
        stderr_lines(f"INFO - {_stamps.local()} - {access.name} - {message}")
        return
    line: dict[str, Any] = {
        "time": _stamps.utc(),
        "level": "INFO",
        "logger": access.name,
        "message": message,
        "requestId": rid,
        "method": method,
        "route": route,
        "status": status,
        "durationMs": round(elapsed_ms, 1),
    }
    if product is not None:
        line["product"] = product
    stderr_lines(_encoder.encode(line).decode())


class JsonFormatter(logging.Formatter):
    """Any other record as one JSON object per line (``FLEET_ARTIFACTS_LOG_FORMAT=json``)."""

    def format(self, record: logging.LogRecord) -> str:
        """``time``, ``level``, ``logger``, ``message``, the request's id, and the exception if any."""
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "requestId", None) or request_id.get()
        if rid is not None:
            line["requestId"] = rid
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()
