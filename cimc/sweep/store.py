"""The results file: one JSON object per line, appended, each line flushed and fsynced.

A run killed mid-write leaves at most one torn last line (no newline, or not JSON). Reading
skips unreadable lines (with a warning); ``repair`` cuts a torn tail before the next append, so
the point of that line counts as not done and is evaluated again. A rerun skips every key
already present (resume); ``latest`` keeps the last record of each key.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from cimc.errors import UsageError
from cimc.limits import RESULTS_FILE_BYTES
from cimc.untrusted import load_json, read_regular, refuse_special_output

log = logging.getLogger(__name__)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every readable record of ``path`` in file order (an absent file: none). The file is read
    by ``cimc.untrusted`` (regular, at most ``RESULTS_FILE_BYTES``); a line that is not JSON
    or nests too deeply is skipped."""
    if not os.path.lexists(path):
        return []
    lines = read_regular(path, limit=RESULTS_FILE_BYTES, what=f"results file {path.name}").split(b"\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = load_json(line, f"line {number}")
        except UsageError:
            log.warning("%s line %d is not JSON (a torn write?): skipped", path.name, number)
            continue
        if isinstance(record, dict) and isinstance(record.get("key"), str):
            records.append(record)
    return records


def latest(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last record of each key."""
    return {r["key"]: r for r in records}


def done_keys(path: Path, retry_failed: bool = False) -> set[str]:
    """Keys already in ``path`` (``retry_failed``: only those that succeeded); a point that hit a
    bug (``status = "bug"``) is never done."""
    return {k for k, r in latest(read_records(path)).items()
            if r.get("status") == "ok" or (not retry_failed and r.get("status") != "bug")}


def repair(path: Path) -> None:
    """Cut a last line that has no newline (a write the previous run did not finish)."""
    if not path.exists():
        return
    refuse_special_output(path)
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        data = _tail(fh, size)
        cut = data.rfind(b"\n") + 1 + (size - len(data))
        log.warning("%s ends in a torn line (%d bytes): cut, its point will be redone", path.name, size - cut)
        fh.truncate(cut)


def _tail(fh: IO[bytes], size: int, block: int = 1 << 20) -> bytes:
    """The file's last bytes, growing until a newline is in them (or the whole file)."""
    while True:
        start = max(size - block, 0)
        fh.seek(start)
        data = fh.read(size - start)
        if b"\n" in data or start == 0:
            return data
        block *= 2


class ResultWriter:
    """Appends records to the results file, durably (flush + fsync per line)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        refuse_special_output(path)
        repair(path)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close / __exit__)

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
