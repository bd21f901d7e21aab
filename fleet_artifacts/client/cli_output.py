"""How the worker commands talk: rich progress bars and tables on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TextIO

from fleet_artifacts.client.errors import FleetError

PROG = "fleet-artifacts"


class UsageError(Exception):
    """A command line that cannot be run as given (exit 2)."""


def human_size(size: int | None) -> str:
    """``1.5 MiB``-style sizes (binary units)."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # not reached


def human_age(when: datetime | None, now: datetime | None = None) -> str:
    """``42s``, ``5m``, ``3h``, ``2d`` ago."""
    if when is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def error(message: str) -> None:
    """One line on stderr, prefixed with the program's name."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def problem_line(what: str, exc: FleetError) -> str:
    """``what: title: detail`` for a failed operation (never a traceback)."""
    return f"{what}: {exc.title}: {exc.detail}" if exc.detail else f"{what}: {exc.title}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, out: TextIO | None = None) -> None:
    """A table: rich's on a terminal, aligned plain columns otherwise (easy to grep and cut)."""
    out = out or sys.stdout
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        grid = Table(*headers, header_style="bold", box=None, pad_edge=False)
        for row in rows:
            grid.add_row(*row)
        Console(file=out).print(grid)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip(), file=out
        )


class Reporter:
    """Progress of many transfers: a rich bar per file and a total on a terminal, else one line per file.

    Thread-safe: transfers report from worker threads.
    """

    def __init__(self, total_bytes: int, total_files: int, *, verb: str, live: bool, log: TextIO) -> None:
        self.verb, self.log, self._lock = verb, log, threading.Lock()
        self._progress = None
        self._total_task = None
        if live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}", justify="left"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(file=log),
                transient=False,
            )
            self._total_task = self._progress.add_task(
                f"[bold]total ({total_files} files)", total=total_bytes or None
            )

    def __enter__(self) -> Reporter:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, name: str, size: int | None) -> Transfer:
        """A transfer's handle: ``advance`` as bytes move, then ``done`` or ``failed``."""
        task = None
        if self._progress is not None:
            task = self._progress.add_task(name[-40:], total=size)
        return Transfer(self, name, task)

    def line(self, text: str) -> None:
        """A line above the bars (or on its own without them)."""
        with self._lock:
            if self._progress is not None:
                self._progress.console.print(text, markup=False, highlight=False)
            else:
                print(text, file=self.log, flush=True)


class Transfer:
    """One file's progress."""

    def __init__(self, reporter: Reporter, name: str, task: object) -> None:
        self.reporter, self.name, self._task = reporter, name, task
        self.moved = 0

    def advance(self, count: int) -> None:
        """``count`` more bytes moved."""
        self.moved += count
        progress = self.reporter._progress
        if progress is not None:
            progress.advance(self._task, count)  # type: ignore[arg-type]
            progress.advance(self.reporter._total_task, count)  # type: ignore[arg-type]

    def finish(self, text: str) -> None:
        """Remove the bar and print the outcome."""
        progress = self.reporter._progress
        if progress is not None:
            progress.remove_task(self._task)  # type: ignore[arg-type]
        self.reporter.line(text)
