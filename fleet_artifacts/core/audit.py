"""The audit trail: one JSON object per line for every security-relevant event.

Logged on the ``fleet_artifacts.audit`` logger (the app writes it to stderr on its own, message
only, so operators can ship it apart from the access log). Each line has ``event``, ``time``,
``actor`` (the token's id, ``sha256:<12 hex>``, or ``anonymous``/``system``), ``requestId``
when it was written while serving a request, and the event's fields. Never a token, a signature
or a signed URL: only what was granted, to what, until when.

    url.signed       a read URL (SAS) was issued: product, artifactId, permission "r", expiresAt
    url.signed       a write URL for a direct upload: permission "cw"
    share.created / share.used / share.revoked
    artifact.deleted (soft: true within the soft-delete window) and artifact.removed (bytes gone)
    token.refused    401 or 403: reason, and the token's id when it was a known token
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from fleet_artifacts.core.clock import utcnow
from fleet_artifacts.core.models import Pointer

log = logging.getLogger("fleet_artifacts.audit")
# Who the current request acts as; the HTTP guard sets it, sweeps and CLI commands run as "system".
actor: contextvars.ContextVar[str] = contextvars.ContextVar("fleet_artifacts_actor", default="system")
# The id of the HTTP request being served (``X-Request-ID``), set by the HTTP layer; None outside one.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fleet_artifacts_request", default=None
)
# Ten times cheaper than json.dumps for a line, with the same keys, order and compact separators;
# anything not JSON (a stray object) is written as its str(), as json.dumps(default=str) did.
_encoder = msgspec.json.Encoder(enc_hook=str)


Writer = Callable[[str], None]
_write: Writer = log.info  # where lines go; the service writes them straight to stderr (``write_to``)


def write_to(writer: Writer | None) -> None:
    """Send the audit lines to ``writer`` (one call per answer: its lines, joined by newlines).

    The service passes a direct write to stderr, where its logging config sends this logger
    anyway: a logging record per answer cost a pointer fetch a sixth of its CPU. None sends
    them to the ``fleet_artifacts.audit`` logger again. The logger's level decides either way.
    """
    global _write
    _write = log.info if writer is None else writer


SignedCounter = Callable[[str, int], None]
_count_signed: SignedCounter | None = None  # the app's metrics, when on: (permission, how many)


def count_signed_with(counter: SignedCounter | None) -> None:
    """Tell ``counter`` how many URLs of each permission are signed (None: tell no one).

    The core knows no metrics library: the app passes its counter's ``inc`` in, as it does
    the audit writer. Counted whether or not the audit logger is on.
    """
    global _count_signed
    _count_signed = counter


def audit(event: str, **fields: Any) -> None:
    """Log one audit line (skipped cheaply when the audit logger is off)."""
    if not log.isEnabledFor(logging.INFO):
        return
    line = {"event": event, "time": utcnow().isoformat(), "actor": actor.get(), **_request(), **fields}
    _write(_encoder.encode(line).decode())


def _request() -> dict[str, str]:
    """``requestId`` for a line written while serving a request."""
    rid = request_id.get()
    return {} if rid is None else {"requestId": rid}


def on_artifact(event: str, pointer: Pointer, **fields: Any) -> None:
    """One audit line about an artifact: its product, id and job, and ``fields``."""
    audit(event, product=pointer.product_id, artifactId=pointer.id, jobId=pointer.job_id, **fields)


def _json_str(value: str) -> str:
    """``value`` as a JSON string."""
    return _encoder.encode(value).decode()


def urls_signed(pointers: Sequence[Pointer], permission: str, expires_at: datetime) -> None:
    """A ``url.signed`` line per signed URL: what it grants, on which artifact, until when (never the URL).

    The lines of one answer (a page of a hundred, say) go out as one log record: the same
    bytes on the stream, one line per URL, but the logging machinery runs once, where it
    had cost a page more than the signing itself.
    """
    if _count_signed is not None and pointers:
        _count_signed(permission, len(pointers))
    if not pointers or not log.isEnabledFor(logging.INFO):
        return
    common = {"event": "url.signed", "time": utcnow().isoformat(), "actor": actor.get(), **_request()}
    # The lines differ only in product, artifactId and jobId: the rest is encoded once, and each
    # line is spliced from JSON-encoded strings, in the key order one dict per line would give.
    head = _encoder.encode(common)[:-1].decode() + ',"product":'
    tail = ',"permission":' + _json_str(permission) + ',"expiresAt":"' + expires_at.isoformat() + '"}'
    encoded: dict[str, str] = {}  # a page's product and job repeat on every line: encoded once

    def enc(value: str) -> str:
        found = encoded.get(value)
        if found is None:
            found = encoded[value] = _json_str(value)
        return found

    lines = [
        f'{head}{enc(pointer.product_id)},"artifactId":{_json_str(pointer.id)},"jobId":{enc(pointer.job_id)}{tail}'
        for pointer in pointers
    ]
    _write("\n".join(lines))
