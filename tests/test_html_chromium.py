"""The HTML report in a real browser (issue 18, point 2): headless Chromium at 1,280 px loads a
small build's page with no script error, no sideways scroll, every layer in the list, the macro
maps three to a row at the height off-screen cards are given (``content-visibility:auto``), and
the page's own ``highlight()`` marking a layer's list and table entries.

Skipped where no Chromium binary is installed (CI has none); ``scripts/html_screenshots.py`` runs
the same probe at VGG9, VGG16, DenseNet-121 and MobileNetV2 scale and stores the screenshots.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cimc.build.reader import read_build
from cimc.views.html_report import MAP_COLUMNS, _card_height, html_report
from scripts.html_screenshots import chromium, measure, probed
from tests.map_builds import build

BROWSER = chromium()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium binary on PATH")


def test_page_loads_without_errors_or_sideways_scroll(tmp_path: Path) -> None:
    assert BROWSER is not None
    b = read_build(build("digits_cnn", placement="aligned"))
    page = tmp_path / "digits.html"
    page.write_text(probed(html_report(b), layer=1), encoding="utf-8")
    got = measure(BROWSER, page, timeout=60)
    assert got["errors"] == []
    assert got["scroll_width"] <= got["client_width"] <= 1280
    assert got["layers"] == len(b.layer_names) and got["macros"] == b.num_macros
    assert got["map_columns"] == min(MAP_COLUMNS, b.num_macros) == 3
    # an off-screen card is laid out at the estimated height before it is drawn: close to a drawn one's
    assert abs(got["card_height"] - _card_height(b.owners)) <= 0.05 * got["card_height"]
    # layer 1's list button and its geometry-table row carry the 'on' outline
    assert got["highlighted"] == 2


def test_a_script_error_is_caught(tmp_path: Path) -> None:
    """The probe's error hook works: a page whose script throws reports it (so [] above means none)."""
    assert BROWSER is not None
    page = tmp_path / "broken.html"
    page.write_text(probed("<!DOCTYPE html><html><head></head><body><div id=layer-list></div>"
                           "<script>undefinedFunction()</script></body></html>"), encoding="utf-8")
    got = measure(BROWSER, page, timeout=60)
    assert len(got["errors"]) == 1 and "undefinedFunction" in got["errors"][0]


def test_highlight_scrolls_the_layer_list_to_its_entry(tmp_path: Path) -> None:
    """A layer highlighted from a map cell or the search box may sit below the list's fold (its
    scroll box shows about ten rows of buttons): ``reveal`` scrolls the list to it. Here the list
    is squeezed to one button per row and about two rows high, so the last layer starts out of view."""
    assert BROWSER is not None
    b = read_build(build("digits_cnn", placement="aligned"))
    squeeze = "<style>#layer-list{max-height:40px;max-width:150px;overflow-x:hidden}</style><style id=hl>"
    last = len(b.layer_names) - 1
    seen = {}
    for layer in (-1, last):
        page = tmp_path / f"list{layer}.html"
        page.write_text(probed(html_report(b).replace("<style id=hl>", squeeze, 1), layer=layer), encoding="utf-8")
        seen[layer] = measure(BROWSER, page, timeout=60)
    assert seen[-1]["list_scroll"] == 0 and seen[-1]["hl_visible"] is None
    assert seen[last]["list_scroll"] > 0 and seen[last]["hl_visible"] is True and seen[last]["errors"] == []
