"""One progress bar shape for every long loop (decoding, training, prediction): shown on a terminal only."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextlib.contextmanager
def progress_bar(console: Console, title: str, total: int, fields: str = "") -> Iterator[Callable[..., None]]:
    """Yields `advance(n, **fields)`; `fields` is a format string over them, e.g. "loss {task.fields[loss]:.4f}"."""
    columns = [TextColumn(title), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(fields)] if fields else []
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task(title, total=total, **dict.fromkeys(_field_names(fields), 0.0))
        yield lambda n=1, **values: progress.update(task, advance=n, **values)


def _field_names(fields: str) -> list[str]:
    return [part.split("]")[0] for part in fields.split("task.fields[")[1:]]
