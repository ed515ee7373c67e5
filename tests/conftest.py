"""Test-suite set-up. Tests that need torch (the ``train`` extra: the zoo, QAT, morphing)
carry ``pytest.mark.torch`` — a whole module by ``pytestmark = pytest.mark.torch``. In an
install without torch those modules are not collected, and ``pytest -m "not torch"`` runs
everything else (CI does, in a fresh core-only environment)."""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None

# Hypothesis, for every property test: the same examples on every run (CI must not pass or fail by
# chance; a developer's random run sets CIMC_FUZZ_RANDOM) and no per-example deadline (a loaded
# 2-core machine is not a failing test).
if importlib.util.find_spec("hypothesis") is not None:
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("cimc", derandomize=not os.environ.get("CIMC_FUZZ_RANDOM"), deadline=None)
    _hypothesis_settings.load_profile("cimc")
_MODULE_MARK = re.compile(r"^pytestmark = .*\bpytest\.mark\.torch\b", re.MULTILINE)


def needs_torch(path: Path) -> bool:
    """Whether a test module is marked as a whole as needing torch."""
    return bool(_MODULE_MARK.search(path.read_text(encoding="utf-8")))


collect_ignore = [] if HAS_TORCH else [p.name for p in sorted(Path(__file__).parent.glob("test_*.py"))
                                       if needs_torch(p)]


# Zoo exports are cached (cimc.models.cache): one fresh cache per test session, never the user's.
_CACHE = tempfile.mkdtemp(prefix="cimc-test-zoo-cache-")
os.environ["CIMC_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

# Progress lines off a terminal start after 2 s (cimc.progress), which on a loaded machine any
# command may pass: off for the suite, so that no output depends on the machine's speed; the
# tests of the progress lines set CIMC_PROGRESS_AFTER themselves (tests/test_progress.py).
os.environ["CIMC_PROGRESS_AFTER"] = "inf"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo what a test's in-process script run does to logging (an evidence script's ``main``
    calls ``logging.basicConfig`` and sets the ``cimc`` logger to ERROR): a later test's
    ``caplog`` would otherwise see none of cimc's warnings."""
    root, cimc_logger = logging.getLogger(), logging.getLogger("cimc")
    handlers, root_level, level = list(root.handlers), root.level, cimc_logger.level
    yield
    root.handlers[:] = handlers
    root.setLevel(root_level)
    cimc_logger.setLevel(level)
