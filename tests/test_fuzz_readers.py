"""A fuzz target per reader of user files (issue 16): mutants of a valid file of each kind go
through the reader a command uses; the only allowed outcomes are a value or a typed
``CimcError`` with a one-line message — never another exception (a traceback, exit 1).

* calibration folders (``cimc.data.sources.load_inputs`` on a folder of ``.npy`` files: the
  bytes of a valid array mutated, names and file kinds varied);
* options files (``--macro`` through ``cimc.macro.load_macro``, ``--bits`` through
  ``cimc.cli.quant.read_bits``; JSON and TOML);
* sweep files (the config through ``cimc.sweep.config.load_config``, the results file through
  ``read_records`` and the report's Pareto set).

Build files have theirs in ``tests/test_fuzz.py`` (edited builds under ``cimc validate``), model
files too. Derandomized (CI must not pass or fail by chance); a long run for developers::

    CIMC_FUZZ_EXAMPLES=3000 python3 -m pytest tests/test_fuzz_readers.py -q -s   # prints the outcomes
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimc.cli.quant import read_bits
from cimc.data.sources import load_inputs
from cimc.errors import CimcError
from cimc.macro import load_macro
from cimc.sweep.config import load_config
from cimc.sweep.pareto import pareto
from cimc.sweep.store import read_records

EXAMPLES = int(os.environ.get("CIMC_FUZZ_EXAMPLES", "0"))
OUTCOMES: dict[str, Counter[str]] = {}
ROOT = Path(__file__).resolve().parents[1]


def _settings(default: int) -> Callable[[Any], Any]:
    return settings(max_examples=EXAMPLES or default, deadline=None, derandomize=not os.environ.get("CIMC_FUZZ_RANDOM"),
                    suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module", autouse=True)
def _report_outcomes() -> Iterator[None]:
    """With ``-s``: each reader's outcome counts (the closing note's distribution)."""
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)
    for reader, counts in OUTCOMES.items():
        print(f"\n{reader}: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))


def _outcome(reader: str, read: Callable[[], object]) -> None:
    """Run ``read``; a typed one-line error or a value is fine, anything else fails the test."""
    try:
        read()
        kind = "ok"
    except CimcError as exc:
        assert exc.message and "\n" not in exc.message and len(exc.message) < 5000, repr(exc.message)
        kind = exc.kind
    OUTCOMES.setdefault(reader, Counter())[kind] += 1


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with 1–6 byte flips, overwrites, cuts or insertions."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        kind, pos = draw(st.sampled_from(["flip", "set", "cut", "insert"])), draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[pos] = draw(st.sampled_from([0, 9, 10, 34, 44, 46, 48, 57, 91, 93, 123, 125, 255]))
        elif kind == "cut":
            del data[pos:pos + draw(st.integers(1, 32))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=12))
    return bytes(data)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


NPY = _npy(np.linspace(-1, 1, 2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4))


@_settings(150)
@given(files=st.lists(st.tuples(st.sampled_from(["a.npy", "b.npy", "x.npy", "c.NPY", "d.txt", "sub"]),
                                mutated(NPY)), min_size=1, max_size=3))
def test_calibration_folder_reader(files: list[tuple[str, bytes]], tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("calib")
    for name, data in files:
        if name == "sub":
            (folder / name).mkdir(exist_ok=True)
        else:
            (folder / name).write_bytes(data)
    _outcome("calibration folder", lambda: load_inputs(folder, shape=(1, 3, 4, 4)))


MACRO_JSON = json.dumps({"name": "m", "wordlines": 64, "bitlines": 64, "cell_bits": 4, "dac_bits": 4,
                         "adc_bits": 5, "adcs": 16}).encode()
MACRO_TOML = b'name = "m"\nwordlines = 64\nbitlines = 64\ncell_bits = 4\ndac_bits = 4\nadc_bits = 5\nadcs = 16\n'
BITS_JSON = json.dumps({"conv1": {"w_bits": 4, "a_bits": 4, "adc_bits": 5}, "fc": {"w_bits": 8}}).encode()
BITS_TOML = b'[conv1]\nw_bits = 4\na_bits = 4\nadc_bits = 5\n[fc]\nw_bits = 8\n'


@_settings(200)
@given(which=st.sampled_from(["macro.json", "macro.toml", "bits.json", "bits.toml"]), data=st.data())
def test_options_file_readers(which: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    seed = {"macro.json": MACRO_JSON, "macro.toml": MACRO_TOML, "bits.json": BITS_JSON, "bits.toml": BITS_TOML}[which]
    path = tmp_path_factory.mktemp("options") / which
    path.write_bytes(data.draw(mutated(seed)))
    read = (lambda: load_macro(path)) if which.startswith("macro") else (lambda: read_bits(path))
    _outcome(f"--{which.split('.')[0]} file", read)


SWEEP = (ROOT / "examples" / "sweep.toml").read_bytes()
RECORD = {"key": "k0", "status": "ok", "point": {"w_bits": 4}, "latency_cycles": 10, "loading_cycles": 2,
          "computing_cycles": 8, "bitlines": 64, "macros": 1, "macro_usage": 0.5, "compiled_top1": 0.9,
          "float_top1": 0.95}
RESULTS = b"\n".join(json.dumps({**RECORD, "key": f"k{i}", "latency_cycles": 10 + i}).encode() for i in range(3))


@_settings(150)
@given(data=st.data())
def test_sweep_config_reader(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("sweep") / "sweep.toml"
    path.write_bytes(data.draw(mutated(SWEEP)))
    _outcome("sweep config", lambda: load_config(path))


@_settings(150)
@given(data=st.data())
def test_sweep_results_reader(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("results") / "sweep.jsonl"
    path.write_bytes(data.draw(mutated(RESULTS)))
    _outcome("sweep results", lambda: pareto(read_records(path)))


@pytest.mark.parametrize("header", [b"{'descr': '<f4'[ 'fortran_order': False, 'shape': (2, 3), }",  # the fuzz find
                                    b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }",
                                    b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"])
def test_a_forged_npy_header_is_a_usage_error_before_numpy_allocates(header: bytes, tmp_path: Path) -> None:
    """numpy parses the header with ``ast`` (a bad literal raised SyntaxError or TokenError: a
    traceback) and allocates the declared shape before reading (10^12 floats: 4 TB)."""
    padded = header + b" " * (-(len(header) + 11) % 64) + b"\n"
    (tmp_path / "a.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(padded).to_bytes(2, "little") + padded + b"\0" * 24)
    with pytest.raises(CimcError, match=r"cannot read a\.npy"):
        load_inputs(tmp_path, shape=(1, 3, 4, 4))
