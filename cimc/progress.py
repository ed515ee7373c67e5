"""Progress of a long command on stderr: the one helper every ``cimc`` command uses.

    with Progress(enabled=not state.as_json) as progress:
        progress.phase("importing model.onnx")
        ...
        progress.phase("drawing macro maps", total=240)
        for m in macros:
            ...
            progress.advance()

Where the lines go and when:

* disabled (``--json``, ``--quiet``): nothing at all;
* stderr a terminal: a transient rich status line (spinner, phase, ``done/total``, detail), gone
  when the command ends;
* stderr anything else (a log file, a pipe, CI): plain lines ``cimc: [  2.0 s] <phase>``, and
  only once the command has run ``THRESHOLD_S`` seconds (``CIMC_PROGRESS_AFTER``), so that a
  fast command prints nothing.
  A phase that began before then is announced when the threshold passes (a timer thread), a
  phase still running adds a line with its count every ``INTERVAL_S``, and a command that
  printed any ends with ``cimc: done in 47.1 s``.

Never on stdout: results and ``--json`` documents stay clean. Lower layers do not print; they
take a callback (``CompileOptions.progress``, ``SearchProblem.progress``, a sweep's
``on_record``) or a ``Progress`` (``write_maps``) and the command decides.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TextIO

#: Seconds a command runs before plain progress lines start (a terminal's status line shows at
#: once); the environment variable ``CIMC_PROGRESS_AFTER`` overrides it (``0``: every phase, ``inf``: none).
THRESHOLD_S = 2.0
#: Seconds between the lines of one long phase, off a terminal.
INTERVAL_S = 10.0


def threshold() -> float:
    """``CIMC_PROGRESS_AFTER`` when it is a number >= 0 (``inf`` included), else ``THRESHOLD_S``."""
    try:
        value = float(os.environ.get("CIMC_PROGRESS_AFTER", ""))
    except ValueError:
        return THRESHOLD_S
    return value if value >= 0 else THRESHOLD_S  # NaN too


class Progress:
    """Phases and counts of one command, shown on stderr as the module doc says. ``clock`` and
    ``stream`` are for tests (a fake clock; a buffer stands for a non-terminal stderr)."""

    def __init__(self, enabled: bool = True, *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self._stream, self._clock = stream, clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._name, self._detail = "", ""
        self._done = 0
        self._total: int | None = None
        self._start = self._last = 0.0
        self._after = THRESHOLD_S
        self._announced = self._shown = False
        self._status: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        self._start, self._after = self._clock(), threshold()
        out = self._out()
        if out.isatty():
            from rich.console import Console

            self._status = Console(file=out).status("starting")
            self._status.__enter__()
        else:
            self._thread = threading.Thread(target=self._watch, name="cimc-progress", daemon=True)
            self._thread.start()
        return self

    def phase(self, name: str, total: int | None = None) -> None:
        """Begin phase ``name`` (ending the one before), of ``total`` steps when counted."""
        if not self.enabled:
            return
        with self._lock:
            self._name, self._detail, self._done, self._total = name, "", 0, total
            self._announced = False
            self._show(self._elapsed() >= self._after)

    def advance(self, steps: int = 1, detail: str = "") -> None:
        """``steps`` more steps of the current phase done; ``detail`` (e.g. the last item) shown beside."""
        if not self.enabled:
            return
        with self._lock:
            self._done += steps
            self._detail = detail or self._detail
            if self._status is not None:
                self._status.update(self._text())

    @contextmanager
    def beside(self, name: str) -> Iterator[None]:
        """Phase ``name``, run by code with its own live display (the training bars of
        ``cimc.train.progress``): the terminal's status line steps aside meanwhile (two live
        displays would garble it); plain lines go on."""
        self.phase(name)
        if self._status is not None:
            self._status.stop()
        try:
            yield
        finally:
            if self._status is not None:
                self._status.start()

    def __call__(self, name: str) -> None:
        """A phase callback (``CompileOptions.progress``): ``progress("pass quantize")``."""
        self.phase(name)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self.enabled:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._status is not None:
            self._status.__exit__(None, None, None)
        elif self._shown and kind is None:
            self._line(f"done in {self._elapsed():.1f} s")

    # --- internals (called with the lock held, or from the watcher thread under it)

    def _out(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def _elapsed(self) -> float:
        return self._clock() - self._start

    def _text(self) -> str:
        count = (f" {self._done:,}/{self._total:,}" if self._total is not None
                 else f" ({self._done:,})" if self._done else "")
        return self._name + count + (f", {self._detail}" if self._detail else "")

    def _show(self, due: bool) -> None:
        if self._status is not None:
            self._status.update(self._text())
        elif due and self._name and not self._announced:
            self._line(self._text())
            self._announced = True

    def _line(self, text: str) -> None:
        from cimc.safe_text import terminal_text

        out = self._out()
        out.write(f"cimc: [{self._elapsed():5.1f} s] {terminal_text(text)}\n")
        out.flush()
        self._shown, self._last = True, self._clock()

    def _watch(self) -> None:
        """Off a terminal: announce the phase running when the threshold passes, then a line per
        ``INTERVAL_S`` while one phase lasts."""
        if self._stop.wait(None if math.isinf(self._after) else max(0.0, self._after - self._elapsed())):
            return
        with self._lock:
            self._show(True)
        while not self._stop.wait(min(1.0, INTERVAL_S)):
            with self._lock:
                if self._clock() - self._last >= INTERVAL_S and self._name:
                    self._line(self._text())
