"""Helpers the command modules share: progress bars and JSON output."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn)


class Bar:
    """A progress sink the library can call: ``advance(n)`` and ``total(n)``."""

    def __init__(self, progress: Progress | None, task: int | None):
        self._progress = progress
        self._task = task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def total(self, n: int | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=n)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, quiet: bool) -> Iterator[Bar]:
    """A bar on stderr, off with --quiet or when stderr is not a terminal."""
    if quiet or not sys.stderr.isatty():
        yield Bar(None, None)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=True) as progress:
        yield Bar(progress, progress.add_task(description, total=total))


def print_json(obj: Any) -> None:
    """The one JSON object a --json command prints on stdout."""
    sys.stdout.write(json.dumps(obj, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
