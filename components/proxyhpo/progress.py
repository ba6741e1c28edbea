"""The one progress display of proxyhpo: a rich bar around an iterable, shown only when asked for.

Long work (validating a data set, writing phantoms, all-pairs similarity) shows a bar on the terminal;
library calls made by pipeline components pass ``enabled=False`` and stay quiet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["track"]

T = TypeVar("T")


def track(items: Iterable[T], description: str, *, total: int | None = None, enabled: bool = True, transient: bool = True) -> Iterator[T]:
    """Yield ``items``, advancing a rich progress bar (elapsed and remaining time) when ``enabled``.

    Args:
        items: what to iterate.
        description: the bar's label.
        total: number of items, when ``items`` has no ``len``.
        enabled: show the bar; otherwise the items pass straight through.
        transient: remove the bar when done (keep it for long computations worth a record).

    Example:
        >>> list(track(range(3), "counting", enabled=False))
        [0, 1, 2]
    """
    if not enabled:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if total is None:
        total = len(items)  # type: ignore[arg-type]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=transient) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
