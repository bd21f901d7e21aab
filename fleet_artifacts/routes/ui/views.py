"""How the browse page shows values: sizes, ages, short digests, sorting, links; and its templates.

Jinja2 with autoescaping on (every value a client sent is escaped where it is written) and
undefined names failing loudly instead of rendering as empty.

Example:
    >>> human_size(0), human_size(1536), human_size(5 * 1024**3)
    ('0 B', '1.5 KiB', '5.0 GiB')
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from fleet_artifacts.core.models import ArtifactOut

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
SortBy = Literal["name", "size", "age"]
Order = Literal["asc", "desc"]


def human_size(size: int) -> str:
    """Bytes in binary units, one decimal from KiB up."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def age(then: datetime | None, now: datetime) -> str:
    """How long ago, in the largest whole unit ("just now", "5 min ago", "3 d ago")."""
    if then is None:
        return "-"
    seconds = int((now - then).total_seconds())
    if seconds < 60:
        return "just now"
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds // length} {unit} ago"
    return "just now"  # unreachable: under a minute returned above


def stamp(when: datetime | None) -> str:
    """A time to the second, in UTC (how the service stores every time)."""
    return "never" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short(digest: str | None) -> str:
    """The first 12 hex digits of a sha256 (the full one goes in a title)."""
    return "-" if not digest else digest[:12]


def sorted_artifacts(items: list[ArtifactOut], by: SortBy, order: Order) -> list[ArtifactOut]:
    """A page's artifacts in the order asked for (names case-insensitively; ties by id)."""
    keys = {
        "name": lambda a: (a.file_name.casefold(), a.id),
        "size": lambda a: (a.size_bytes, a.id),
        "age": lambda a: (a.created_at, a.id),
    }
    # "age" ascending is youngest first, like the listing itself.
    reverse = (order == "desc") != (by == "age")
    return sorted(items, key=keys[by], reverse=reverse)


def query_link(path: str, params: Mapping[str, str | None]) -> str:
    """``path`` with the given query parameters (empty ones left out)."""
    kept = {k: v for k, v in params.items() if v}
    return f"{path}?{urlencode(kept)}" if kept else path


def templates() -> TemplateConfig[JinjaTemplateEngine]:
    """The page's template engine (the app factory registers it)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(size=human_size, age=age, short=short, stamp=stamp)
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(env))
