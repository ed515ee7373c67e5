"""Short names keep the distinctive end and stay unique within a table."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cimc.views.names import short_names, tail


def test_legacy_export_names_keep_their_distinctive_end() -> None:
    names = [f"/features/features.{i}/conv/conv.1/Conv" for i in (3, 13)]
    assert short_names(names, 24) == ["…ures.3/conv/conv.1/Conv", "…res.13/conv/conv.1/Conv"]
    assert tail(names[0], 24) == "…ures.3/conv/conv.1/Conv" and len(tail(names[0], 24)) == 24
    assert short_names(["a", "bb"], 24) == ["a", "bb"]


def test_collisions_are_widened_until_unique() -> None:
    names = ["/block.1/conv/Conv", "/block.2/conv/Conv", "/x"]
    short = short_names(names, 8)
    assert short == ["…1/conv/Conv", "…2/conv/Conv", "/x"]


@given(st.lists(st.text(alphabet="ab/.", min_size=1, max_size=30), max_size=12), st.integers(2, 12))
def test_short_names_are_unique_suffixes(names: list[str], width: int) -> None:
    short = short_names(names, width)
    assert len(set(short)) == len(set(names))
    for name, s in zip(names, short, strict=True):
        assert s == name or (s.startswith("…") and name.endswith(s[1:]))
