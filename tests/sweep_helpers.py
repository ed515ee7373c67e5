"""Shared pieces of the sweep tests: a small config and record comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SMALL = """
model = "digits_cnn"
eval = "digits"
eval_size = 120
calib = "digits"
calib_size = 16
[axes]
w_bits = [4, 8]
[axes.macro]
preset = ["paper", "small-64"]
"""


def write_config(folder: Path, text: str = SMALL, name: str = "sweep.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def without_time(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Records by key, minus the wall time (the only field that may differ between runs)."""
    return {r["key"]: {k: v for k, v in r.items() if k != "wall_s"} for r in records}
