"""Trusted hosts: a request whose ``Host`` is not one of the service's names is refused (400).

Without ``PUBLIC_BASE_URL`` the service builds its own URLs (local download and upload URLs,
share links, redirects) from the request's ``Host``: a forged one would hand clients URLs to
another origin. ``ALLOWED_HOSTS`` names the hosts (``*.example.com`` matches subdomains);
unset, only loopback names pass while ``PUBLIC_BASE_URL`` is unset, and any host once it is set
(the URLs no longer follow ``Host`` then).
"""

from __future__ import annotations

import json

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send

from fleet_artifacts.core.audit import request_id

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_PROBLEM = {
    "type": "about:blank",
    "title": "Bad Request",
    "status": 400,
    "detail": "the Host header names no host this service answers for (FLEET_ARTIFACTS_ALLOWED_HOSTS)",
    "field": "Host",
}


def host_of(value: str) -> str:
    """The host name of a ``Host`` header value: no port, no IPv6 brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``host`` matches one of ``patterns`` (exact, or ``*.domain`` for its subdomains).

    A value with a path, query, fragment or user part is no host name at all, whatever its end
    (``evil.com/x.example.com`` would pass as a subdomain and end up in the service's own URLs).
    """
    if any(mark in host for mark in "/?#@\\"):
        return False
    for pattern in patterns:
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


def trusted_hosts(app: ASGIApp, patterns: tuple[str, ...] | None) -> ASGIApp:
    """Wrap ``app``: refuse HTTP requests whose Host matches none of ``patterns`` (None: any host)."""
    if patterns is None:
        return app

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        if allowed(host_of(header), patterns):
            await app(scope, receive, send)
            return
        rid = request_id.get()
        body = json.dumps(_PROBLEM if rid is None else {**_PROBLEM, "requestId": rid}).encode()
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return middleware
