"""Short names keep the distinctive end and stay unique within a table."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cimc.views.names import compact, short_names, tail


def test_legacy_export_names_keep_their_distinctive_end() -> None:
    """A path name is shown as its module path, the block index first in view."""
    names = [f"/features/features.{i}/conv/conv.1/Conv" for i in (3, 13)]
    assert short_names(names, 24) == ["features.3.conv.1", "features.13.conv.1"]
    assert tail(names[0], 24) == "…ures.3/conv/conv.1/Conv" and len(tail(names[0], 24)) == 24
    assert short_names(["a", "bb"], 24) == ["a", "bb"]


@pytest.mark.parametrize(("name", "path"), [
    ("/features/features.1/conv/conv.0/conv.0.0/Conv", "features.1.conv.0.0"),
    ("/features/features.0/features.0.0/Conv", "features.0.0"),
    ("/classifier/classifier.1/Gemm", "classifier.1"),
    ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
    ("/Conv", "/Conv"), ("node_Conv_809", "node_Conv_809"), ("conv1", "conv1"), ("a/b", "a.b")])
def test_compact_is_the_module_path(name: str, path: str) -> None:
    assert compact(name) == path


def test_names_whose_module_paths_are_equal_keep_their_full_paths() -> None:
    names = ["/a/a.1/Conv", "/a/a.1/Conv_1", "a.1", "/b/Conv"]
    assert short_names(names, 24) == ["/a/a.1/Conv", "/a/a.1/Conv_1", "a.1", "b"]


def test_mobilenet_v2_legacy_names_are_unique_and_show_their_block() -> None:
    """The 52 CIM layers of torch's MobileNetV2 as the legacy exporter names them (the real-model
    corpus, tests/models/mobilenet.py): before, the 28-character tails cut the block index
    (``….1/conv/conv.0/conv.0.0/Conv`` for features.1 and features.11 alike)."""
    names = ["/features/features.0/features.0.0/Conv", "/features/features.1/conv/conv.0/conv.0.0/Conv",
             "/features/features.1/conv/conv.1/Conv"]
    for block in range(2, 18):
        names += [f"/features/features.{block}/conv/{conv}/Conv"
                  for conv in ("conv.0/conv.0.0", "conv.1/conv.1.0", "conv.2")]
    names += ["/features/features.18/features.18.0/Conv"]
    short = short_names(names, 28)
    assert len(names) == 52 and len(set(short)) == 52
    blocks = [re.match(r"features\.(\d+)\.", s) for s in short]
    assert [int(b.group(1)) if b else None for b in blocks] == [int(n.split("/")[2].split(".")[1]) for n in names]
    assert max(map(len, short)) <= 28 and not any(s.startswith("…") for s in short)


def test_collisions_are_widened_until_unique() -> None:
    names = ["/block.1/conv/Conv", "/block.2/conv/Conv", "/x"]
    assert short_names(names, 8) == ["….1.conv", "….2.conv", "/x"]
    assert short_names(["layer_a_1_conv", "layer_b_1_conv", "x"], 8) == ["…a_1_conv", "…b_1_conv", "x"]


@given(st.lists(st.text(alphabet="ab/.", min_size=1, max_size=30), max_size=12), st.integers(2, 12))
def test_short_names_are_unique_suffixes(names: list[str], width: int) -> None:
    short = short_names(names, width)
    assert len(set(short)) == len(set(names))
    for name, s in zip(names, short, strict=True):  # a suffix of the name or of its module path
        assert any(s == full or (s.startswith("…") and full.endswith(s[1:])) for full in (name, compact(name)))
