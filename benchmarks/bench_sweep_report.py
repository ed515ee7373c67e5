"""Reading a sweep's results (issue 16, point 8): ``cimc sweep --report``'s work without the
plot — read the JSONL records, keep the latest per key, find the Pareto set — on 200,000
records (20,000 with ``--quick``), against the floor any reader pays: ``json.loads`` of every
line. Both are linear; the target is a small constant ratio (the Pareto set was all-pairs,
``O(n²)``: 20,000 records took 98 s)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import Benchmark


def _setup(n: int) -> Path:
    rng = np.random.default_rng(0)
    root = Path(tempfile.mkdtemp(prefix="cimc-bench-sweep-"))
    lines = [json.dumps({"key": f"{i:016x}", "status": "ok",
                         "point": {"bl": int(rng.integers(1, 9)) * 512, "w_bits": int(rng.integers(2, 9))},
                         "latency_cycles": int(rng.integers(10_000, 1_000_000)), "loading_cycles": 1,
                         "computing_cycles": 1, "bitlines": int(rng.integers(100, 5000)), "macros": 3,
                         "macro_usage": float(rng.random()), "fits_on_chip": True}) for i in range(n)]
    (root / "results.jsonl").write_text("\n".join(lines) + "\n")
    return root


def summarise(root: Path) -> object:
    from cimc.sweep.run import summarise as summary_of

    return summary_of(root / "results.jsonl")


def json_lines(root: Path) -> object:
    return [json.loads(line) for line in (root / "results.jsonl").read_bytes().splitlines()]


def benchmarks(quick: bool) -> list[Benchmark]:
    n = 20_000 if quick else 200_000
    return [Benchmark(f"sweep-report/{n}", setup=lambda: _setup(n), run=summarise, reference=json_lines,
                      reference_name="json.loads of every line", target_ratio=3.0,
                      teardown=lambda root: shutil.rmtree(root, ignore_errors=True), rounds=3)]
