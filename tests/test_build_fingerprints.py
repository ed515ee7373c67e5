"""Every build of the zoo × a set of compile options is byte-for-byte the committed one
(``scripts/build_fingerprints.py``): refactorings that must not change behaviour prove it here.
A change that alters a build on purpose regenerates the golden file with
``python3 scripts/build_fingerprints.py -o tests/golden/build_fingerprints.json`` and says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.build_fingerprints import run

GOLDEN = Path(__file__).parent / "golden" / "build_fingerprints.json"


def test_small_zoo_builds_are_byte_identical_to_the_golden_hashes() -> None:
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = run("tiny_cnn/")
    assert got and got == {k: v for k, v in expected.items() if k.startswith("tiny_cnn/")}


@pytest.mark.slow
@pytest.mark.torch  # the large zoo models are exported with torch
def test_every_zoo_build_is_byte_identical_to_the_golden_hashes() -> None:
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert run(None) == expected
