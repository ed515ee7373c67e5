"""Optional parts of the install. The core (``pip install cimc``) compiles, inspects, maps,
validates, diffs and emulates ONNX files; the ``train`` extra adds torch and onnxscript for
the zoo, ``cimc qat``, ``cimc morph``, ``cimc search``'s fine-tuning and ``cimc sweep --train``.
Using one of those without its extra is a usage error that names the install line."""

from __future__ import annotations

import importlib.util

from cimc.errors import UsageError

#: extra → the modules it brings.
EXTRAS: dict[str, tuple[str, ...]] = {"train": ("torch", "onnxscript")}
#: The line that installs an extra (torch's CPU build: an unpinned torch pulls CUDA packages).
INSTALL = {"train": "pip install torch==2.13.0 'cimc[train]'   (the CPU build of torch)"}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, what: str) -> None:
    """Raise a ``UsageError`` naming ``extra`` and its install line if any of its modules is missing."""
    absent = missing(extra)
    if absent:
        raise UsageError(f"{what} needs the '{extra}' extra ({', '.join(absent)} not installed)",
                         hint=INSTALL[extra])
