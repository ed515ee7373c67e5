"""``cimc validate``'s full set of checks: the structural ones of ``cimc.check.validate`` plus
the emulator against onnxruntime on ``model.cim.onnx`` (``cimc.emulator.equivalence``), which
needs the emulator and so lives in this package, a layer above ``check``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cimc.check import validate as structural
from cimc.check.violations import Validation
from cimc.emulator.equivalence import check_outputs

require_ok = structural.require_ok


def validate_build(path: str | Path, reference: str | Path | bool = False,
                   progress: Callable[[str], None] | None = None) -> Validation:
    """Every check of ``cimc validate`` on the build at ``path`` (``reference`` and ``progress``
    as in ``cimc.check.validate.validate_build``)."""
    return structural.validate_build(path, reference, extra=[("outputs", check_outputs)], progress=progress)
