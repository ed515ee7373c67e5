"""quantize: its place in a pipeline, and edge cases left unasserted by the other quantize tests
(each found as a surviving mutant of ``scripts/mutate.py``)."""

from __future__ import annotations

import pytest

from cimc.errors import UsageError
from cimc.passes.pipelines import check_order


def test_a_pipeline_running_quantize_before_tile_wordlines_is_refused() -> None:
    with pytest.raises(UsageError, match="'quantize' needs 'tile-wordlines' before it"):
        check_order(("select-cim", "quantize", "tile-wordlines"))
    check_order(("select-cim", "tile-wordlines", "quantize"))
