"""Progress on every command that can take more than 2 s (``cimc.progress``): its phases on
stderr, never on stdout, silent under ``--json``; and the helper's own rules (threshold, counts,
the watcher thread, disabled). The suite turns progress off (``CIMC_PROGRESS_AFTER=inf`` in
conftest); these tests set the threshold to 0 so every phase shows whatever the machine's speed."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cimc import progress as progress_module
from cimc.cli.main import main
from cimc.progress import Progress, threshold
from tests.map_builds import build

LINE = re.compile(r"^cimc: \[ *\d+\.\d s\] (.*)$", re.MULTILINE)
SWEEP = 'model = "tiny_cnn"\n[axes]\nw_bits = [4, 8]\n'


def phases(text: str) -> list[str]:
    return LINE.findall(text)


class Clock:
    """A fake ``time.monotonic`` moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_fast_command_prints_nothing_and_a_slow_one_its_phases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIMC_PROGRESS_AFTER", "2")
    clock, out = Clock(), io.StringIO()
    with Progress(stream=out, clock=clock) as progress:
        progress.phase("importing")
        clock.now += 1.5
        progress.phase("pass quantize")  # 1.5 s in: not yet
        assert out.getvalue() == ""
        clock.now += 1.0
        progress.phase("drawing macro maps", total=240)  # 2.5 s in: shown
        progress.advance(3)
    lines = out.getvalue().splitlines()
    assert lines == ["cimc: [  2.5 s] drawing macro maps 0/240", "cimc: [  2.5 s] done in 2.5 s"]
    quiet = io.StringIO()
    with Progress(stream=quiet, clock=Clock()) as progress:
        progress.phase("importing")
    assert quiet.getvalue() == ""  # under the threshold: nothing, not even "done"


def test_a_phase_begun_before_the_threshold_is_announced_when_it_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIMC_PROGRESS_AFTER", "0.05")
    out = io.StringIO()
    with Progress(stream=out) as progress:
        progress.phase("pass quantize")  # one long phase: no further call tells the helper anything
        deadline = time.monotonic() + 30
        while "pass quantize" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert phases(out.getvalue())[:1] == ["pass quantize"]


def test_a_long_phase_repeats_its_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIMC_PROGRESS_AFTER", "0")
    monkeypatch.setattr(progress_module, "INTERVAL_S", 0.05)
    out = io.StringIO()
    with Progress(stream=out) as progress:
        progress.phase("emulating samples", total=10)
        progress.advance(4, detail="batch 1")
        deadline = time.monotonic() + 30
        while "4/10" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "emulating samples 4/10, batch 1" in phases(out.getvalue())


def test_disabled_progress_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIMC_PROGRESS_AFTER", "0")
    out = io.StringIO()
    with Progress(enabled=False, stream=out) as progress:
        progress.phase("importing")
        progress.advance()
        progress("pass quantize")
    assert out.getvalue() == ""


@pytest.mark.parametrize(("value", "seconds"), [("", 2.0), ("0", 0.0), ("inf", float("inf")), ("-1", 2.0),
                                                ("nan", 2.0), ("soon", 2.0)])
def test_the_threshold_variable(monkeypatch: pytest.MonkeyPatch, value: str, seconds: float) -> None:
    monkeypatch.setenv("CIMC_PROGRESS_AFTER", value)
    assert threshold() == seconds


def test_names_from_a_build_are_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIMC_PROGRESS_AFTER", "0")
    out = io.StringIO()
    with Progress(stream=out) as progress:
        progress.phase("reading evil\x1b[2J.build")
    assert "\x1b" not in out.getvalue()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32))
    return path


def commands(tmp: Path, inputs: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Each long command, and phases (prefixes) its progress must show, in order."""
    b = str(build("tiny_cnn"))
    (tmp / "sweep.toml").write_text(SWEEP, encoding="utf-8")
    return {
        "compile": (["compile", "tiny_cnn", "-o", str(tmp / "c")],
                    ["importing tiny_cnn", "pass fold-batchnorm", "pass quantize", "build files", "writing"]),
        "inspect": (["inspect", b, "--html", str(tmp / "r.html"), "--png", str(tmp / "png")],
                    ["reading", "writing r.html", "drawing macro maps (png) 0/", "drawing the overview",
                     "text view"]),
        "validate": (["validate", b], ["reading", "check manifest", "check outputs", "check report"]),
        "diff": (["diff", b, b], ["reading", "reading", "comparing"]),
        "maps": (["maps", b, "-o", str(tmp / "maps"), "--timeline"],
                 ["reading", "drawing macro maps (png) 0/", "drawing the overview", "drawing the timeline"]),
        "emulate": (["emulate", b, "--inputs", str(inputs), "--golden", str(tmp / "g")],
                    ["opening and checking", "loading x.npy", "emulating samples 0/3", "golden vectors"]),
        "export-qdq": (["export-qdq", b, "-o", str(tmp / "q.onnx")], ["reading", "QDQ rewrite"]),
        "zoo export": (["zoo", "export", "tiny_cnn", "-o", str(tmp / "t.onnx")], ["exporting tiny_cnn"]),
        "search": (["search", "tiny_cnn", "--data", "synthetic", "--max-evals", "2", "--max-acc-drop", "5"],
                   ["preparing", "greedy search: configurations evaluated", "held-out test split"]),
        "sweep": (["sweep", str(tmp / "sweep.toml"), "-o", str(tmp / "s.jsonl"), "--engine", "serial", "--no-plot"],
                  ["sweep points 0/2"]),
    }


@pytest.mark.parametrize("name", ["compile", "inspect", "validate", "diff", "maps", "emulate", "export-qdq",
                                  "zoo export", "search", "sweep"])
def test_every_long_command_shows_its_phases_on_stderr_only(tmp_path: Path, inputs: Path, name: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIMC_PROGRESS_AFTER", "0")
    args, expected = commands(tmp_path, inputs)[name]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    shown = phases(result.stderr)
    found, at = [], 0
    for prefix in expected:  # each expected phase, in this order
        at = next((i for i in range(at, len(shown)) if shown[i].startswith(prefix)), len(shown))
        found.append(at < len(shown))
        at += 1
    assert all(found), (expected, shown)
    assert shown[-1].startswith("done in ")
    assert not phases(result.stdout), result.stdout


@pytest.mark.parametrize("name", ["compile", "validate", "emulate", "search"])
def test_json_output_has_no_progress(tmp_path: Path, inputs: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIMC_PROGRESS_AFTER", "0")
    args, _ = commands(tmp_path, inputs)[name]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert not phases(result.stderr) and not phases(result.stdout)


class Terminal(io.StringIO):
    """A buffer that says it is a terminal (rich then draws its live status line into it)."""

    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_status_line_shows_at_once_and_steps_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    """No threshold on a terminal: the status line names the phase and its count from the start;
    ``beside`` stops it while another live display (training bars) runs, then it comes back."""
    monkeypatch.setenv("CIMC_PROGRESS_AFTER", "inf")
    out = Terminal()
    with Progress(stream=out) as progress:
        progress.phase("drawing macro maps", total=240)
        progress.advance(7)
        assert progress._status is not None
        progress._status._live.refresh()
        assert "drawing macro maps 7/240" in out.getvalue()
        with progress.beside("training"):
            assert not progress._status._live.is_started
        assert progress._status._live.is_started
    assert not phases(out.getvalue())  # no plain lines on a terminal
