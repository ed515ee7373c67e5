"""The pass registry: every pass class registers under its ``name`` (``@register``).

    @register
    @dataclass(frozen=True)
    class TileWordlines(GraphPass):
        name = "tile-wordlines"

``get(name)`` finds a pass class (a ``UsageError`` listing the names when there is none),
``all_passes()`` lists them in registration order. Every module of ``cimc.passes`` is imported
on first use (so a new pass module there needs no other edit to register); a pass living in a
higher package (``morph-channels`` in ``cimc.morph``) registers when its module is imported,
which ``cimc.api`` does.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from functools import cache
from typing import TypeVar

from cimc.errors import UsageError
from cimc.passes.manager import GraphPass

P = TypeVar("P", bound=type[GraphPass])
_REGISTRY: dict[str, type[GraphPass]] = {}


def register(cls: P) -> P:
    """Register pass class ``cls`` under its ``name``; a second class of that name is a bug."""
    known = _REGISTRY.get(cls.name)
    if known is not None and known is not cls:
        raise ValueError(f"pass name '{cls.name}' is taken by {known.__module__}.{known.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[GraphPass]:
    """The pass class registered as ``name``."""
    _load_builtin()
    found = _REGISTRY.get(name)
    if found is None:
        raise UsageError(f"unknown pass '{name}'", hint=f"passes: {', '.join(_REGISTRY)}")
    return found


def all_passes() -> list[type[GraphPass]]:
    """Every registered pass class, in registration order."""
    _load_builtin()
    return list(_REGISTRY.values())


def names() -> tuple[str, ...]:
    """The registered pass names."""
    return tuple(p.name for p in all_passes())


@cache
def _load_builtin() -> None:
    """Import every module of ``cimc.passes`` (each pass module registers its pass), once per
    process (a compile asks for its passes dozens of times)."""
    package = sys.modules[__package__ or "cimc.passes"]
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def summary(cls: type[GraphPass]) -> str:
    """The first line of the pass's module docstring, without its leading ``name:``."""
    doc = (sys.modules[cls.__module__].__doc__ or "").strip()
    line = doc.splitlines()[0] if doc else ""
    return line.removeprefix(f"{cls.name}:").strip()
