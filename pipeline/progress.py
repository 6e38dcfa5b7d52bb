"""One progress shape for every long loop (decoding, training, prediction): a bar on a terminal; elsewhere
(Kaggle notebooks, nohup, CI logs) a plain line every PLAIN_EVERY_S seconds."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

PLAIN_EVERY_S = 30.0


@contextlib.contextmanager
def progress_bar(console: Console, title: str, total: int, **fields: float) -> Iterator[Callable[..., None]]:
    """Yields `advance(n, **fields)`; each named field (with its starting value) is shown as `name value`."""
    if not console.is_terminal:
        yield plain_progress(console, title, total, dict(fields))
        return
    shown = [TextColumn(" ".join(f"{name} {{task.fields[{name}]:.4f}}" for name in fields))] if fields else []
    with Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), *shown, TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(title, total=total, **fields)
        yield lambda n=1, **values: progress.update(task, advance=n, **values)


def plain_progress(console: Console, title: str, total: int, fields: dict[str, float],
                   every: float | None = None) -> Callable[..., None]:
    """`advance` for a console that is not a terminal: `title: done/total (pct) name value …`, at most one line
    per `every` seconds, none for loops shorter than that."""
    every = PLAIN_EVERY_S if every is None else every
    state = {"done": 0, "shown_at": time.monotonic()}

    def advance(n: int = 1, **values: float) -> None:
        state["done"] += n
        fields.update(values)
        now = time.monotonic()
        if now - state["shown_at"] >= every and state["done"] < total:
            state["shown_at"] = now
            console.print(f"{title}: {state['done']}/{total} ({state['done'] / max(total, 1):.0%})"
                          + "".join(f" {name} {value:.4f}" for name, value in fields.items()))
    return advance
