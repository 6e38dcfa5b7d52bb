"""One progress bar shape for every long loop (decoding, training, prediction): shown on a terminal only."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextlib.contextmanager
def progress_bar(console: Console, title: str, total: int, **fields: float) -> Iterator[Callable[..., None]]:
    """Yields `advance(n, **fields)`; each named field (with its starting value) is shown as `name value`."""
    shown = [TextColumn(" ".join(f"{name} {{task.fields[{name}]:.4f}}" for name in fields))] if fields else []
    with Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), *shown, TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(title, total=total, **fields)
        yield lambda n=1, **values: progress.update(task, advance=n, **values)
