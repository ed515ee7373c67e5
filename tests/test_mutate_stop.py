"""``scripts/mutate.py`` stopped part-way (SIGTERM to the worker, as ``timeout`` or ``kill``
sends): the report keeps every mutant that finished, says it was stopped, and the command
exits 2 — a long run is never lost whole."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from scripts import mutate, mutation_worker

FIRST = '''def first():
    return 1


def second():
    return 2
'''
# test_second stops the worker when it sees a mutant of ``second`` (never on the clean code):
# the mutant runs in a child forked from the worker, so its parent is the worker
TESTS = '''import os
import signal
import time

from pkg.calc import first, second


def test_first():
    assert first() == 1


def test_second():
    if second() != 2:
        os.kill(os.getppid(), signal.SIGTERM)
        time.sleep(60)
    assert second() == 2
'''


def test_a_stopped_run_reports_the_mutants_that_finished(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "calc.py").write_text(FIRST)
    (root / "tests").mkdir()
    (root / "tests" / "test_pkg.py").write_text(TESTS)
    report = tmp_path / "r.json"
    code = mutate.main(["--root", str(root), str(root / "pkg" / "calc.py"), "--jobs", "1", "--report", str(report),
                        "--tests", "tests/test_pkg.py"])
    assert code == 2
    got = json.loads(report.read_text())
    module = got["modules"]["pkg.calc"]
    assert got["stopped"] is True
    lines = {o["line"] for o in module["outcomes"]}
    assert module["outcomes"] and lines == {2}  # every mutant of first() ran (all killed), none of second()
    assert all(o["status"] == "killed" for o in module["outcomes"])
    assert module["planned"] > module["mutants"] == len(module["outcomes"])
    assert "**Stopped**" in report.with_suffix(".md").read_text()


def test_after_a_stop_signal_later_ones_are_ignored_until_the_report_is_written() -> None:
    """``timeout`` sends SIGTERM to the whole process group and the runner then terminates its
    worker: a second SIGTERM used to land in the worker's report writing and lose it all."""
    before = signal.getsignal(signal.SIGTERM)
    try:
        for handler in (mutation_worker._stop, mutate._exit_on_signal):
            signal.signal(signal.SIGTERM, handler)
            with pytest.raises(SystemExit) as stop:
                handler(signal.SIGTERM, None)
            assert stop.value.code == 128 + signal.SIGTERM
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
