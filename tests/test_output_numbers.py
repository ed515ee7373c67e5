"""Numbers read the same way in every console and markdown output (issue 18, point 4): counts of
four or more digits carry thousands separators (``38,592``, never ``38656``), and no number is
printed at full float precision (``41.998895424813526 dB``) — that is for the JSON files only.
Indices (macro ``m12``, bitlines ``b1024–2047``) and hashes are identifiers, not figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cimc.cli.main import main

#: A number: digits with optional thousands commas and decimals, not part of a word, an index
#: (``b12``), a range's end (``0–1023``), a version or a path.
_NUMBER = re.compile(r"(?<![\w.#/–:-])(\d[\d,]*(?:\.\d+)?)(?![\w.]*\w|–)")
#: A decimal with more decimals than this *and* more significant digits than this was printed at full
#: precision (``0.002137`` is a 4-significant-digit step, ``41.998895424813526`` is not formatted).
MAX_DIGITS = 4


def unformatted(text: str) -> list[str]:
    """The numbers of ``text`` written without thousands separators or at full precision."""
    found = []
    for line in text.splitlines():
        for match in _NUMBER.finditer(line):
            token = match.group(1).rstrip(",")
            whole, _, decimals = token.partition(".")
            significant = (whole + decimals).replace(",", "").lstrip("0")
            no_separator = len(whole) >= 4 and "," not in whole
            full_precision = len(decimals) > MAX_DIGITS and len(significant) > MAX_DIGITS
            if no_separator or full_precision:
                found.append(f"{token!r} in: {line.strip()[:140]}")
    return found


def test_the_checker_catches_the_issues_examples() -> None:
    assert unformatted("Model output SQNR, shifted vs exact scales: 41.998895424813526 dB.")
    assert unformatted("all 151 macros fit the budget of 38656 bitlines")
    assert unformatted("| total | 2080 |") and unformatted("weight load 148377.6 pJ")
    assert unformatted("S_ADC 0.00213754")
    assert not unformatted("bitlines 38,592; usage 42.41%; S_W 0.002137; S_ADC 395.9; 4/4/5; 256×256; 8/4s/5")
    assert not unformatted("one-time weight load 148,377.6 pJ; 59.11 TOPS/W; 0.0001 s")
    assert not unformatted("m0:b1024–2047 → m1:b0–1023; sha256 3aa73c94deb9…; --bl 768 avoids it; node_conv2d_12")


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


SWEEP = """model = "tiny_cnn"
mode = "grid"
calib = "synthetic"
calib_size = 4
[axes]
w_bits = [4, 8]
bitline_budget = [256, 4096]
"""


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The console and markdown outputs of a small set of builds: digits_cnn with evaluation
    (accuracy, loss tables), and bit-sliced on a budget that makes it reload (budget notes)."""
    tmp = tmp_path_factory.mktemp("numbers")
    a, b = str(tmp / "a"), str(tmp / "b")
    out = {"compile": _cli("compile", "digits_cnn", "--calib", "digits", "--eval", "digits", "--eval-size", "64",
                           "-o", a),
           "compile sliced": _cli("compile", "digits_cnn", "--bl", "256", "--w-bits", "8", "--calib", "digits",
                                  "-o", b)}
    out |= {"report.md": Path(a, "report.md").read_text(encoding="utf-8"),
            "report.md sliced": Path(b, "report.md").read_text(encoding="utf-8"),
            "inspect": _cli("inspect", a), "inspect --macro": _cli("inspect", b, "--macro", "1"),
            "inspect --layer": _cli("inspect", b, "--layer", "node_conv2d_1"), "diff": _cli("diff", a, b),
            "emulate": _cli("emulate", a, "--data", "digits"), "validate": _cli("validate", b),
            "search": _cli("search", "tiny_cnn", "--data", "synthetic", "--max-acc-drop", "5", "--strategy", "greedy",
                           "-o", str(tmp / "s"))}
    (tmp / "sweep.toml").write_text(SWEEP, encoding="utf-8")
    out["sweep"] = _cli("sweep", str(tmp / "sweep.toml"), "-o", str(tmp / "sweep.jsonl"), "--engine", "serial",
                        "--no-plot")
    out["sweep --report"] = _cli("sweep", "--report", str(tmp / "sweep.jsonl"), "--no-plot")
    keys = [json.loads(line)["key"][:8] for line in (tmp / "sweep.jsonl").read_text(encoding="utf-8").splitlines()]
    for name in ("sweep", "sweep --report"):  # the points' sha256 prefixes are names, even when all digits
        out[name] = re.sub("|".join(keys), "<key>", out[name])
    return out


def test_every_output_formats_its_numbers(outputs: dict[str, str]) -> None:
    wrong = {name: found for name, text in outputs.items() if (found := unformatted(text))}
    assert not wrong, wrong


def test_the_outputs_hold_figures_of_every_kind(outputs: dict[str, str]) -> None:
    """The check is not vacuous: the outputs hold separated thousands, percentages and decimals."""
    text = "\n".join(outputs.values())
    assert re.search(r"\d,\d{3}", text) and re.search(r"\d\.\d\d%", text) and "dB" in text
    assert "Model output SQNR" in outputs["report.md"]
