"""A compile killed with SIGKILL at random points never leaves half a build directory.

Build A (the corpus' ``valid.onnx``) is in place; a compile of build B (the same model on
another macro, with different files) is started in a subprocess and killed either after a
random delay or a random moment after its temporary folder appears (inside the write).
Afterwards the output folder must hold exactly A or exactly B (every file hash equal), never
a mixture; and the next compile must succeed and remove the killed run's leftovers.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cimc.api import compile_model
from cimc.build import atomic_dir
from tests.corpus.make_corpus import HERE

MODEL = HERE / "valid.onnx"
B_ARGS = ("--macro", "small-64", "--map-fc")
CLI = "import sys; from cimc.cli.main import main; sys.argv[0] = 'cimc'; main()"


def snapshot(folder: Path) -> dict[str, str]:
    """Every file's sha256; the writer's marker (left in the build by a kill between the swap
    and its removal, removed by the next compile) aside."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.name != atomic_dir.MARKER}


def start_b(out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", CLI, "--json", "compile", str(MODEL), "-o", str(out), *B_ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".cimc-"))


def _wait_for_temp(parent: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None and not leftovers(parent):
        time.sleep(0.0005)


def kill_run(out: Path, rng: random.Random, mode: str, full: float) -> None:
    proc = start_b(out)
    try:
        if mode == "anytime":
            time.sleep(rng.uniform(0.0, full))
        else:  # inside the write: soon after the temporary folder appears
            _wait_for_temp(out.parent, proc, timeout=10 * full)
            time.sleep(rng.uniform(0.0, 0.02))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], dict[str, str], float]:
    """Hashes of build A and build B, and how long a whole compile of B takes."""
    root = tmp_path_factory.mktemp("ref")
    compile_model(MODEL, root / "a")
    start = time.monotonic()
    assert start_b(root / "b").wait(timeout=120) == 0
    return snapshot(root / "a"), snapshot(root / "b"), time.monotonic() - start


def run_trials(tmp_path: Path, builds: tuple[dict[str, str], dict[str, str], float], trials: int, seed: int) -> None:
    a, b, full = builds
    out = tmp_path / "out"
    rng = random.Random(seed)
    seen: set[str] = set()
    mid_write = 0  # kills that left a temporary folder behind: they hit the write itself
    for trial in range(trials):
        compile_model(MODEL, out)  # back to A; also cleans up the previous trial's leftovers
        assert snapshot(out) == a and leftovers(tmp_path) == []
        kill_run(out, rng, "anytime" if trial % 2 else "writing", full)
        mid_write += bool(leftovers(tmp_path))
        if not out.exists():
            assert atomic_dir._EXCHANGE is None, "the target vanished although renames are atomic swaps"
            seen.add("none")
            continue
        state = snapshot(out)
        assert state in (a, b), f"trial {trial}: half a build: {sorted(state)}"
        seen.add("A" if state == a else "B")
    compile_model(MODEL, out)
    assert leftovers(tmp_path) == []
    assert "A" in seen  # some kills landed before the swap
    print(f"kill trials: {trials}, killed mid-write: {mid_write}, final states seen: {sorted(seen)}")


def test_sigkill_leaves_previous_build_or_new_one(tmp_path: Path, builds: tuple[dict[str, str], dict[str, str],
                                                                                   float]) -> None:
    run_trials(tmp_path, builds, trials=6, seed=7)


def test_sigkill_of_a_first_build_leaves_none_or_all(tmp_path: Path, builds: tuple[dict[str, str],
                                                                                 dict[str, str], float]) -> None:
    _, b, full = builds
    rng = random.Random(3)
    for trial in range(2):
        out = tmp_path / f"first{trial}"
        kill_run(out, rng, "writing", full)
        assert not out.exists() or snapshot(out) == b


@pytest.mark.slow
def test_sigkill_many_times(tmp_path: Path, builds: tuple[dict[str, str], dict[str, str], float]) -> None:
    run_trials(tmp_path, builds, trials=80, seed=int(os.environ.get("CIMC_KILL_SEED", "1")))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_leftovers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    host, dead = atomic_dir._HOST, _dead_pid()
    stale = [tmp_path / f".cimc-tmp-{host}-{dead}-abc", tmp_path / f".cimc-old-{host}-{dead}-def"]
    live = tmp_path / f".cimc-tmp-{host}-{os.getppid()}-ghi"  # a running process: maybe mid-write
    other_host = tmp_path / ".cimc-tmp-elsewhere-1-jkl"
    ancient = tmp_path / ".cimc-tmp-elsewhere-2-mno"
    # a user's folders named like leftovers but without cimc's marker are never deleted
    unmarked = [tmp_path / f".cimc-tmp-{host}-{dead}-usr", tmp_path / ".cimc-old-notes"]
    for folder in [*stale, live, other_host, ancient, *unmarked]:
        folder.mkdir()
        (folder / "layout.json").write_text("{half")
        if folder not in unmarked:
            atomic_dir.mark(folder)
    (tmp_path / unmarked[0] / atomic_dir.MARKER).write_text("forged")  # the marker's content counts too
    for folder in (ancient, *unmarked):
        os.utime(folder, (time.time() - 2 * atomic_dir.STALE_AFTER_S,) * 2)
    compile_model(MODEL, tmp_path / "out")
    assert leftovers(tmp_path) == sorted(p.name for p in (live, other_host, *unmarked))
    assert (unmarked[1] / "layout.json").read_text() == "{half"
    assert snapshot(tmp_path / "out")["manifest.json"]
