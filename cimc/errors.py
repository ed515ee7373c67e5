"""The cimc error hierarchy: every user-facing failure is a ``CimcError`` with a fixed exit code.

Exit codes are part of the command-line contract (documented in the README):

====  =====================  ==================================================
code  class                  meaning
====  =====================  ==================================================
2     UsageError             bad command-line arguments or options
3     InvalidModelError      the model file is malformed or inconsistent
4     UnsupportedError       valid ONNX that cimc cannot compile (ops, dtypes)
5     ResourceLimitError     a size, memory or time budget would be exceeded
6     MappingError           the model cannot be mapped onto the macro spec
7     SecurityError          an input tried to escape its folder or similar
8     BuildError             a build directory is missing, corrupt or tampered
9     PassError              an internal pass failed (a bug: please report it)
====  =====================  ==================================================
"""

from __future__ import annotations

from typing import Any

from cimc.safe_text import safe_message


class CimcError(Exception):
    """Base of all cimc errors: a one-line message, an exit code, optional hint and details."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None, details: dict[str, Any] | None = None):
        message = safe_message(message)  # names from the model: one line, no escapes, shortened
        super().__init__(message)
        self.message = message
        self.hint = None if hint is None else safe_message(hint)
        self.details = details or {}

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form used by ``--json``."""
        out: dict[str, Any] = {"error": self.kind, "exit_code": self.exit_code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class UsageError(CimcError):
    exit_code = 2
    kind = "usage"


class InvalidModelError(CimcError):
    exit_code = 3
    kind = "invalid-model"


class UnsupportedError(CimcError):
    exit_code = 4
    kind = "unsupported"


class ResourceLimitError(CimcError):
    exit_code = 5
    kind = "resource-limit"


class MappingError(CimcError):
    exit_code = 6
    kind = "mapping-infeasible"


class SecurityError(CimcError):
    exit_code = 7
    kind = "security-refusal"


class BuildError(CimcError):
    exit_code = 8
    kind = "invalid-build"


class PassError(CimcError):
    exit_code = 9
    kind = "pass-failed"


EXIT_CODES: dict[str, int] = {
    cls.kind: cls.exit_code
    for cls in (UsageError, InvalidModelError, UnsupportedError, ResourceLimitError,
                MappingError, SecurityError, BuildError, PassError)
}
