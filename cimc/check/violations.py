"""What ``cimc validate`` reports: a ``Violation`` (one broken promise of a build) and the
``Validation`` that collects them, with the ``Check`` signature every check module follows."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cimc.build.reader import BuildDir


@dataclass(frozen=True)
class Violation:
    """One broken promise of a build: which check, where (file, layer, macro), what."""

    check: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.where}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Validation:
    """The outcome: every violation, the checks that ran and notes on what was skipped."""

    build: Path
    violations: list[Violation] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {"build": str(self.build), "ok": self.ok, "checks": self.checks, "notes": self.notes,
                "violations": [v.to_dict() for v in self.violations]}


Check = Callable[[BuildDir, Validation], Iterable[Violation]]
