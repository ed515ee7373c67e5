"""``cimc sweep --engine ray`` gives the pool's records (minus wall time): on a local Ray instance,
and through the CLI on a cluster of separate processes (``ray start --head`` plus a worker node,
one CPU each) whose worker node is killed mid-sweep: its points run again on the head, the
JSONL stays valid, every point is recorded once."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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
    # address "local": a fresh instance, never a cluster that another run left (or left listed in /tmp/ray)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
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


CLUSTER_CONFIG = CONFIG.replace("adc_bits = [5, 8]", "adc_bits = [4, 5]")  # every point compiles
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_env() -> dict[str, str]:
    """The environment of every process of the test cluster: token authentication with a token of
    its own (Ray turns token mode on by itself when ``~/.ray/auth_token`` exists, for the head
    only: set explicitly, every node and the driver agree), no inherited cluster address."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    return dict(env, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))


def _ray_node(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``ray start ARGS --block`` in its own session (so the node's processes die with its group),
    its output to ``log``; returns once the node is up."""
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", *args, "--num-cpus=1", "--block",
           "--disable-usage-stats"]
    with log.open("wb") as fh:
        node = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and node.poll() is None:
        if b"Ray runtime started" in log.read_bytes():
            return node
        time.sleep(0.5)
    _kill(node)
    raise AssertionError(f"ray node did not start: {log.read_text(errors='replace')[-2000:]}")


def _runs_a_point(node: subprocess.Popen[bytes]) -> bool:
    """Whether a process of ``node``'s session is executing a sweep point (Ray titles a worker
    process ``ray::_ray_task`` while it runs one)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            session = int(stat.read_text().rsplit(")", 1)[1].split()[3])
            if session == node.pid and (stat.parent / "cmdline").read_bytes().startswith(b"ray::_ray_task"):
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def _kill(node: subprocess.Popen[bytes]) -> None:
    """Kill the node's process group (the ``ray start`` process, its raylet and workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGKILL)
    node.wait(timeout=60)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], dict[str, str], Path]]:
    """A head node and a worker node, one CPU each; yields the address, the worker node, the
    environment a driver needs and the cluster's temporary folder (its logs; short, since Ray's
    Unix sockets live there)."""
    port, env = _free_port(), _ray_env()
    temp = Path(tempfile.mkdtemp(prefix="cimc-ray-"))
    head = _ray_node(["--head", f"--port={port}", "--include-dashboard=false", "--node-ip-address=127.0.0.1",
                      f"--temp-dir={temp}"], tmp_path / "head.log", env)
    try:
        worker = _ray_node([f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1"], tmp_path / "worker.log",
                           env)
        try:
            yield f"127.0.0.1:{port}", worker, env, temp
        finally:
            _kill(worker)
    finally:
        _kill(head)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ray_cluster_survives_a_killed_worker_node(
        cluster: tuple[str, subprocess.Popen[bytes], dict[str, str], Path], tmp_path: Path) -> None:
    address, worker, ray_env, temp = cluster
    config = write_config(tmp_path, CLUSTER_CONFIG)
    out = tmp_path / "cluster.jsonl"
    env = dict(ray_env, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "cimc.cli.main", "sweep", str(config), "-o", str(out), "--engine", "ray",
           "--address", address, "--no-plot"]
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 600
    while not _runs_a_point(worker):  # the worker node is running a point
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.2)
    _kill(worker)  # mid-sweep, mid-point
    killed_at = out.read_bytes().count(b"\n")
    _, stderr = driver.communicate(timeout=900)
    assert driver.returncode == 0, stderr[-3000:]
    assert killed_at < 8
    driver_logs = b"".join(p.read_bytes() for p in temp.glob("session_*/logs/python-core-driver-*.log"))
    assert b"failed with error NODE_DIED" in driver_logs and b"Will resubmit task" in driver_logs  # a retry
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])  # valid JSONL, nothing torn
    records = read_records(out)
    assert len(records) == 8 and len({r["key"] for r in records}) == 8  # every point once
    plan: Any = plan_sweep(config)
    run_sweep(plan, tmp_path / "pool.jsonl", engine="pool", workers=2)
    assert without_time(records) == without_time(read_records(tmp_path / "pool.jsonl"))
    assert all(r["status"] == "ok" for r in records)
