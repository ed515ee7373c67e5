"""``cimc compile`` settles its process (``cimc.cli.heap``): the objects of its imports frozen
out of the cyclic collector's walks, young collections every ``YOUNG`` allocations, and glibc's
malloc keeping large freed blocks for the next arrays."""

from __future__ import annotations

import ctypes
import gc
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cimc.cli import heap
from cimc.cli.main import main


def test_settle_imports_freezes_and_collects_the_young_less_often() -> None:
    old = gc.get_threshold()
    try:
        heap.settle_imports()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (heap.YOUNG, *old[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*old)


def test_keep_freed_memory_sets_both_malloc_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    heap.keep_freed_memory()
    assert calls == [(-3, heap.MMAP_THRESHOLD), (-1, heap.TRIM_THRESHOLD)]  # M_MMAP_, M_TRIM_THRESHOLD
    calls.clear()
    monkeypatch.setattr(sys, "platform", "darwin")
    heap.keep_freed_memory()
    assert calls == []


@pytest.mark.parametrize(("owns", "expected"), [(True, ["young", "gc", "malloc"]), (False, [])])
def test_compile_settles_only_its_own_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owns: bool,
                                              expected: list[str]) -> None:
    """As the ``cimc`` command, compile applies the three settings; called in-process by a host
    (here ``CliRunner`` under pytest) it leaves the host's collector and allocator alone."""
    done: list[str] = []
    monkeypatch.setattr(heap, "owns_process", lambda: owns)
    monkeypatch.setattr(heap, "collect_young_less_often", lambda: done.append("young"))
    monkeypatch.setattr(heap, "settle_imports", lambda: done.append("gc"))
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: done.append("malloc"))
    result = CliRunner().invoke(main, ["compile", "tiny_cnn", "-o", str(tmp_path / "build")])
    assert result.exit_code == 0, result.output
    assert done == expected


def test_owns_process_is_the_cimc_command_alone() -> None:
    main_py = str(Path(heap.__file__).with_name("main.py"))
    assert heap.owns_process(["/usr/local/bin/cimc", "compile"])
    assert heap.owns_process(["C:/Python/Scripts/cimc.exe"])
    assert heap.owns_process([main_py, "compile"])  # python -m cimc.cli.main
    assert not heap.owns_process(["/usr/bin/pytest", "-q"])
    assert not heap.owns_process(["-c"])
    assert not heap.owns_process([])
    assert not heap.owns_process([""])
    assert not heap.owns_process()  # this test process: pytest


def test_collect_young_less_often_keeps_the_older_thresholds() -> None:
    old = gc.get_threshold()
    try:
        heap.collect_young_less_often()
        assert gc.get_threshold() == (heap.YOUNG, *old[1:])
    finally:
        gc.set_threshold(*old)
