"""What machine a benchmark ran on: CPU, cores, memory, OS, load and package versions.

Versions are read from the installed distributions' metadata, so describing the machine
imports nothing heavy (torch in particular is never imported here).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

PACKAGES = ("cimc", "numpy", "onnx", "onnxruntime", "protobuf", "torch", "safetensors")


def _proc_field(path: str, key: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        return None
    return None


def cpu_model() -> str:
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()


def memory_gib() -> float | None:
    total = _proc_field("/proc/meminfo", "MemTotal")  # "23456789 kB"
    return round(int(total.split()[0]) / 2**20, 1) if total else None


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine_info() -> dict[str, Any]:
    """A JSON-ready description of this machine and its software."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable,
        "memory_gib": memory_gib(), "platform": platform.platform(),
        "python": sys.version.split()[0], "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": versions(),
    }


def describe(info: dict[str, Any]) -> str:
    """One line for humans: ``CPU, N cores (M usable), X GiB, Python, numpy/onnx/torch``."""
    v = info["versions"]
    return (f"{info['cpu']}, {info['logical_cores']} cores ({info['usable_cores']} usable), "
            f"{info['memory_gib']} GiB, Python {info['python']}, numpy {v['numpy']}, onnx {v['onnx']}, "
            f"onnxruntime {v['onnxruntime']}, torch {v['torch']}")
