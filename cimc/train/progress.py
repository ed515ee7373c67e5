"""A rich progress bar over all training steps, with the running loss (silent when disabled)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class EpochBar:
    """``with EpochBar(title, epochs, steps) as bar: bar.advance(loss)``."""

    def __init__(self, title: str, epochs: int, steps_per_epoch: int, enabled: bool) -> None:
        self.title, self.steps, self.enabled = title, steps_per_epoch, enabled
        self.total = epochs * steps_per_epoch
        self.done = 0
        self.smoothed: float | None = None
        self._progress: Progress | None = None
        self._task = TaskID(0)

    def __enter__(self) -> EpochBar:
        if self.enabled:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                      console=Console(stderr=True), transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=self.total, info="")
        return self

    def skip(self, epochs: int) -> None:
        """Mark ``epochs`` already done (resumed from a checkpoint)."""
        self.done += epochs * self.steps
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)

    @property
    def epoch(self) -> int:
        """The 1-based epoch of the last step done: ``⌈done / steps⌉`` (at least 1)."""
        return max(-(-self.done // max(self.steps, 1)), 1)

    def advance(self, loss: float) -> None:
        self.done += 1
        self.smoothed = loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * loss
        if self._progress is not None:
            self._progress.update(self._task, advance=1, info=f"epoch {self.epoch} loss {self.smoothed:.4f}")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
