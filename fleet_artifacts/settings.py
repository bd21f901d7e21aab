"""Typed settings, loaded explicitly from ``FLEET_ARTIFACTS_*`` variables.

Nothing here runs at import time: ``load_settings(os.environ)`` is called by the
CLI (or a test) and the result is passed to ``create_app(settings)``.

Example:
    >>> s = load_settings({"FLEET_ARTIFACTS_TOKENS": "t0ken-t0ken-t0ken:acme:read",
    ...                    "FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"})
    >>> s.tokens[0].product, sorted(s.tokens[0].scopes), s.sas_ttl_seconds
    ('acme', [<Scope.READ: 'read'>], 900)
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from fleet_artifacts.core.access import TokenEntry, parse_entries, parse_token_file
from fleet_artifacts.core.errors import InvalidInput
from fleet_artifacts.core.validation import check_id

PREFIX = "FLEET_ARTIFACTS_"
MiB = 1024 * 1024
GiB = 1024 * MiB

BlobBackend = Literal["local", "azure"]
PointerBackend = Literal["sqlite", "cosmos"]
LogFormat = Literal["text", "json"]
# What an acknowledged upload survives on the local backend and SQLite: a power loss (every write
# fsynced before the answer) or a crash of the process (written to the OS, renamed and committed).
Durability = Literal["power", "process"]


class SettingsError(ValueError):
    """A setting is missing, malformed or contradicts another."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the service can be configured with (see ``.env.example``)."""

    tokens: tuple[TokenEntry, ...] = ()
    tokens_file: Path | None = None
    anon_read_product: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    blob_backend: BlobBackend = "local"
    azure_storage_connection_string: str | None = None
    azure_storage_account_url: str | None = None
    blob_container: str = "fleet-artifacts"
    pointer_backend: PointerBackend = "sqlite"
    cosmos_endpoint: str | None = None
    cosmos_key: str | None = None
    cosmos_database: str = "fleet-artifacts"
    cosmos_container: str = "pointers"
    cosmos_init_on_start: bool = False
    data_dir: Path = Path("fleet-artifacts-data")
    durability: Durability = "power"  # process: no fsync of local blobs; SQLite synchronous=NORMAL
    signing_key: str | None = None
    public_base_url: str | None = None
    allowed_hosts: tuple[str, ...] | None = None  # None: loopback names, or any once PUBLIC_BASE_URL is set
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (off when empty)
    max_upload_bytes: int = 10 * GiB
    max_envelope_bytes: int = 8 * MiB
    sas_ttl_seconds: int = 900
    max_sas_ttl_seconds: int = 24 * 3600
    upload_url_ttl_seconds: int = 3600
    verify_max_bytes: int = 64 * MiB
    idempotency_retention_seconds: int = 24 * 3600
    session_ttl_seconds: int = 24 * 3600
    block_size_bytes: int = 8 * MiB
    upload_concurrency: int = 4
    azure_retry_total: int = 3
    connect_retries: int = 2  # Azure connection errors: retried briefly (0.5 s, 1 s), not like throttling
    connect_timeout_seconds: float = 5.0  # connect timeout to Azure; also the time budget for retrying
    max_header_bytes: int = 64 * 1024
    header_timeout_seconds: int = 10
    log_level: str = "INFO"
    log_format: LogFormat = "text"  # json: one JSON object per line, with the request's id
    default_retention_days: int = 30
    max_retention_days: int = 365
    soft_delete_days: int = 0
    event_retention_days: int = 7
    cool_after_days: int | None = None
    cold_after_days: int | None = None
    archive_after_days: int | None = None
    sweep_interval_seconds: int = 3600
    shutdown_grace_seconds: int = 30  # SIGTERM: in-flight requests get this long to finish
    max_share_seconds: int = 30 * 24 * 3600
    ready_timeout_seconds: float = 2.0
    metrics: bool = False  # GET /metrics (Prometheus) and the per-request counting behind it
    metrics_token: str | None = None  # when set, /metrics needs it as a bearer token


_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "max_upload_bytes": (1, 190 * 1024 * GiB),
    "max_envelope_bytes": (1, 64 * MiB),
    "sas_ttl_seconds": (60, 7 * 24 * 3600),
    "max_sas_ttl_seconds": (60, 7 * 24 * 3600),
    "upload_url_ttl_seconds": (60, 7 * 24 * 3600),
    "verify_max_bytes": (0, 190 * 1024 * GiB),
    "idempotency_retention_seconds": (60, 30 * 24 * 3600),
    "session_ttl_seconds": (60, 7 * 24 * 3600),
    "block_size_bytes": (64 * 1024, 4000 * MiB),
    "upload_concurrency": (1, 64),
    "azure_retry_total": (0, 10),
    "connect_retries": (0, 10),
    "max_header_bytes": (4 * 1024, 1024 * 1024),
    "port": (0, 65535),
    "header_timeout_seconds": (1, 300),
    "default_retention_days": (1, 36500),
    "max_retention_days": (1, 36500),
    "soft_delete_days": (0, 365),
    "event_retention_days": (1, 365),
    "cool_after_days": (1, 36500),
    "cold_after_days": (1, 36500),
    "archive_after_days": (1, 36500),
    "sweep_interval_seconds": (0, 7 * 24 * 3600),
    "shutdown_grace_seconds": (0, 3600),
    "max_share_seconds": (60, 366 * 24 * 3600),
}
_FLOAT_BOUNDS: dict[str, tuple[float, float]] = {
    "ready_timeout_seconds": (0.1, 30.0),
    "connect_timeout_seconds": (0.5, 120.0),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "blob_backend": ("local", "azure"),
    "pointer_backend": ("sqlite", "cosmos"),
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "log_format": ("text", "json"),
    "durability": ("power", "process"),
}


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_HOST = re.compile(r"\*|(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?|[0-9a-f:]+")


def parse_tokens(raw: str) -> tuple[TokenEntry, ...]:
    """Parse ``token:productId[:scopes][,...]`` (``core.access`` says what an entry may be)."""
    try:
        return parse_entries(
            filter(None, (part.strip() for part in raw.split(","))), source=f"{PREFIX}TOKENS"
        )
    except InvalidInput as exc:
        raise SettingsError(exc.detail) from None


def load_token_file(path: Path) -> tuple[TokenEntry, ...]:
    """Check a tokens file at start-up (the service reads it again whenever it changes)."""
    try:
        return parse_token_file(path.read_text(), source=f"{PREFIX}TOKENS_FILE {path}")
    except OSError as exc:
        raise SettingsError(f"{PREFIX}TOKENS_FILE: cannot read {path}: {exc.strerror or exc}") from None
    except InvalidInput as exc:
        raise SettingsError(exc.detail) from None


# Read by the client commands (push, ls, ...), not by the service: a worker may have both set.
CLIENT_VARIABLES = frozenset({PREFIX + "URL", PREFIX + "TOKEN"})


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build ``Settings`` from an environment mapping; raise SettingsError if invalid."""
    fields = set(Settings.__struct_fields__)
    values: dict[str, object] = {}
    for name, raw in environ.items():
        if not name.startswith(PREFIX) or name.startswith(PREFIX + "TEST_") or name in CLIENT_VARIABLES:
            continue
        field = name[len(PREFIX) :].lower()
        if field not in fields:
            raise SettingsError(f"unknown setting {name}; see .env.example for the list")
        raw = raw.strip()
        if field == "tokens":
            # Set but empty (or only separators) is a mistake, not a wish for the zero-config
            # token: starting with a generated token would hide it.
            values[field] = parse_tokens(raw)
            if not values[field]:
                raise SettingsError(
                    f"{name} is set but names no token: give token:productId pairs, "
                    "or unset it for the zero-config token"
                )
            continue
        if raw == "":
            continue
        if field in _INT_BOUNDS:
            low, high = _INT_BOUNDS[field]
            try:
                number = int(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
            if not low <= number <= high:
                raise SettingsError(f"{name} must be between {low} and {high}")
            values[field] = number
        elif field in _FLOAT_BOUNDS:
            low_f, high_f = _FLOAT_BOUNDS[field]
            try:
                seconds = float(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a number, got {raw!r}") from None
            if not low_f <= seconds <= high_f:  # NaN and the infinities fail here too
                raise SettingsError(f"{name} must be between {low_f:g} and {high_f:g}")
            values[field] = seconds
        elif field in _CHOICES:
            choice = raw.upper() if field == "log_level" else raw.lower()
            if choice not in _CHOICES[field]:
                raise SettingsError(f"{name} must be one of {', '.join(_CHOICES[field])}")
            values[field] = choice
        elif field in ("cosmos_init_on_start", "metrics"):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise SettingsError(f"{name} must be true or false")
            values[field] = raw.lower() in ("true", "1", "yes")
        elif field in ("data_dir", "tokens_file"):
            values[field] = Path(raw)
        elif field == "anon_read_product":
            try:
                values[field] = check_id(raw, "productId")
            except InvalidInput as exc:
                raise SettingsError(f"{name}: {exc.detail}") from None
        elif field == "signing_key" and len(raw) < 32:
            raise SettingsError(f"{name} must be at least 32 characters")
        elif field == "metrics_token" and (len(raw) < 16 or not raw.isprintable() or " " in raw):
            raise SettingsError(f"{name} must be at least 16 printable characters, no spaces")
        elif field == "allowed_hosts":
            hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
            if not hosts or any(not _HOST.fullmatch(h) for h in hosts):
                raise SettingsError(f"{name}: comma-separated host names, *.domain patterns or *")
            values[field] = hosts
        elif field == "cors_origins":
            origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
            if any(o != "*" and not _ORIGIN.fullmatch(o) for o in origins):
                raise SettingsError(f"{name}: comma-separated origins such as https://dash.example.com, or *")
            values[field] = origins
        elif field == "public_base_url" and not raw.startswith(("http://", "https://")):
            raise SettingsError(f"{name} must be an http:// or https:// URL")
        else:
            values[field] = raw.rstrip("/") if field == "public_base_url" else raw
    has_cs = "azure_storage_connection_string" in values
    has_url = "azure_storage_account_url" in values
    # No backend named: Azure if an Azure account is configured, else the embedded default.
    values.setdefault("blob_backend", "azure" if has_cs or has_url else "local")
    if values["blob_backend"] == "local" and (has_cs or has_url):
        raise SettingsError(f"{PREFIX}BLOB_BACKEND=local contradicts the Azure storage settings given")
    if values["blob_backend"] == "azure" and has_cs == has_url:
        raise SettingsError(
            f"the azure blob backend needs exactly one of {PREFIX}AZURE_STORAGE_CONNECTION_STRING "
            f"or {PREFIX}AZURE_STORAGE_ACCOUNT_URL"
        )
    if values.get("pointer_backend") == "cosmos" and "cosmos_endpoint" not in values:
        raise SettingsError(f"{PREFIX}POINTER_BACKEND=cosmos needs {PREFIX}COSMOS_ENDPOINT")
    settings = msgspec.convert(values, Settings)
    if settings.tokens_file is not None:
        file_tokens = load_token_file(settings.tokens_file)
        digests = {entry.digest for entry in settings.tokens}
        if any(entry.digest in digests for entry in file_tokens):
            raise SettingsError(f"a token is in both {PREFIX}TOKENS and {PREFIX}TOKENS_FILE")
    if settings.metrics_token is not None and not settings.metrics:
        raise SettingsError(f"{PREFIX}METRICS_TOKEN is set but {PREFIX}METRICS is not true")
    if settings.sas_ttl_seconds > settings.max_sas_ttl_seconds:
        raise SettingsError(f"{PREFIX}SAS_TTL_SECONDS exceeds {PREFIX}MAX_SAS_TTL_SECONDS")
    if settings.default_retention_days > settings.max_retention_days:
        raise SettingsError(f"{PREFIX}DEFAULT_RETENTION_DAYS exceeds {PREFIX}MAX_RETENTION_DAYS")
    ages = [
        (name, days)
        for name, days in (
            ("COOL_AFTER_DAYS", settings.cool_after_days),
            ("COLD_AFTER_DAYS", settings.cold_after_days),
            ("ARCHIVE_AFTER_DAYS", settings.archive_after_days),
        )
        if days is not None
    ]
    for (warm, warm_days), (cold, cold_days) in itertools.pairwise(ages):
        if cold_days <= warm_days:
            raise SettingsError(f"{PREFIX}{cold} must be more than {PREFIX}{warm}: colder tiers come later")
    if settings.max_upload_bytes > settings.block_size_bytes * 50_000:
        raise SettingsError(
            f"{PREFIX}MAX_UPLOAD_BYTES exceeds 50,000 blocks of {PREFIX}BLOCK_SIZE_BYTES "
            "(Azure's block limit): raise the block size or lower the limit"
        )
    return settings
