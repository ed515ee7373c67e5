"""The zoo export cache: a second export of the same model is a copy of the first, the key
follows seed, torch version and model source, and ``off`` disables it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cimc import models
from cimc.models import cache

pytestmark = pytest.mark.torch


def test_second_export_is_a_cache_hit_with_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
    models.export_onnx("tiny_cnn", tmp_path / "a.onnx", seed=3)
    assert len(list((tmp_path / "cache").glob("tiny_cnn-seed3-*.onnx"))) == 1

    def no_export(target: Path) -> None:
        raise AssertionError("exported although cached")

    assert cache.cached_export("tiny_cnn", 3, tmp_path / "b.onnx", no_export)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    fresh = tmp_path / "fresh.onnx"
    models.export_onnx("tiny_cnn", fresh, seed=3, fresh=True)
    assert fresh.read_bytes() == (tmp_path / "a.onnx").read_bytes()


def test_key_changes_with_seed_torch_and_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = cache.key("vgg9", 0, "2.13.0")
    assert cache.key("vgg9", 1, "2.13.0") != base and cache.key("vgg9", 0, "2.14.0") != base
    assert cache.key("vgg16", 0, "2.13.0") != base
    (tmp_path / "extra.py").write_text("x = 1\n")
    for source in cache.SOURCES.glob("*.py"):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(cache, "SOURCES", tmp_path)
    assert cache.key("vgg9", 0, "2.13.0") != base  # an edited zoo source is another key


def test_off_and_unwritable_cache_still_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.ENV, cache.OFF)
    assert cache.cache_dir() is None
    calls: list[Path] = []
    assert not cache.cached_export("tiny_cnn", 5, tmp_path / "x.onnx", calls.append)
    (tmp_path / "blocked").write_text("a file where the cache folder should be")
    monkeypatch.setenv(cache.ENV, str(tmp_path / "blocked"))
    assert not cache.cached_export("tiny_cnn", 5, tmp_path / "y.onnx", calls.append)
    assert calls == [tmp_path / "x.onnx", tmp_path / "y.onnx"]


def test_a_cache_hit_does_not_import_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cimc compile vgg9`` from the cache must not pay torch's import (seconds)."""
    import subprocess
    import sys

    monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
    models.export_onnx("tiny_cnn", tmp_path / "a.onnx", seed=4)
    code = ("import sys; from pathlib import Path; from cimc import models; "
            f"models.export_onnx('tiny_cnn', Path({str(tmp_path / 'b.onnx')!r}), seed=4); "
            "print(sys.modules.get('torch') is not None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_onnx_file_reads_the_cached_or_shipped_file_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cimc compile vgg9`` imports the cache's entry itself (no 37 MB copy); a miss exports
    into a temporary folder that is removed afterwards; a shipped model is its shipped file."""
    monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
    models.export_onnx("tiny_cnn", tmp_path / "a.onnx", seed=6)
    with models.onnx_file("tiny_cnn", seed=6) as hit:
        assert hit.parent == tmp_path / "cache"
        assert hit.read_bytes() == (tmp_path / "a.onnx").read_bytes()
    monkeypatch.setenv(cache.ENV, cache.OFF)
    with models.onnx_file("tiny_cnn", seed=6) as miss:
        assert miss.parent.parent != tmp_path / "cache" and miss.read_bytes() == (tmp_path / "a.onnx").read_bytes()
    assert not miss.exists()
    with models.onnx_file("tiny_cnn") as shipped:
        assert shipped == models.shipped("tiny_cnn")
