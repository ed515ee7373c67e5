"""``cimc sweep --engine ray`` on a local Ray instance gives the pool's records (minus wall time)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cimc.sweep.run import plan_sweep, run_sweep
from cimc.sweep.store import read_records
from tests.sweep_helpers import without_time, write_config

ray = pytest.importorskip("ray")

CONFIG = """
model = "digits_cnn"
eval = "digits"
eval_size = 120
calib = "digits"
[fixed]
bitline_budget = 512
[axes]
w_bits = [4, 8]
morph_lambda = [0.0, 0.5]
adc_bits = [5, 8]
"""


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_matches_pool(local_ray: None, tmp_path: Path) -> None:
    plan: Any = plan_sweep(write_config(tmp_path, CONFIG))
    assert len(plan.tasks) == 8
    run_sweep(plan, tmp_path / "ray.jsonl", engine="ray")
    run_sweep(plan, tmp_path / "pool.jsonl", engine="pool", workers=2)
    by_ray, by_pool = (without_time(read_records(tmp_path / f"{name}.jsonl")) for name in ("ray", "pool"))
    assert by_ray == by_pool and len(by_ray) == 8
    failed = [r for r in by_ray.values() if r["status"] != "ok"]
    assert len(failed) == 4 and {r["point"]["adc_bits"] for r in failed} == {8}  # over the macro's 5-bit ADC
    lam = {r["point"]["morph_lambda"]: r["bitlines"] for r in by_ray.values() if r["status"] == "ok"}
    assert set(lam) == {0.0, 0.5}
