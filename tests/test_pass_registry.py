"""The pass registry and the declared pipelines: registration, ``cimc passes``, and
``cimc compile --passes / --disable / --stop-after`` with what the manifest records."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cimc.morph.channels_pass  # noqa: F401  (registers morph-channels, which lives in cimc.morph)
from cimc.cli.main import main
from cimc.errors import UsageError
from cimc.options import OPTIONS, passes_options
from cimc.passes import registry
from cimc.passes.manager import GraphPass
from cimc.passes.pipelines import DEFAULT, MAPPING, PIPELINES, POOLED, SEARCH_PREFIX, check_buildable, select


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def build_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def manifest_options(folder: Path) -> dict[str, Any]:
    options: dict[str, Any] = json.loads((folder / "manifest.json").read_text())["options"]
    return options


def test_every_pass_of_every_pipeline_is_registered_once() -> None:
    names = registry.names()
    assert len(names) == len(set(names))
    for pipeline in PIPELINES.values():
        for name in pipeline:
            assert registry.get(name).name == name
    assert {"morph-channels", "equalize", *POOLED} == set(names)


def test_a_wrong_name_is_a_usage_error_listing_the_passes() -> None:
    with pytest.raises(UsageError, match="unknown pass 'quantise'") as info:
        registry.get("quantise")
    assert "tile-wordlines" in (info.value.hint or "")


def test_a_second_pass_of_a_taken_name_is_refused() -> None:
    @dataclass(frozen=True)
    class Impostor(GraphPass):
        name = "quantize"

    with pytest.raises(ValueError, match="taken"):
        registry.register(Impostor)
    assert registry.get("quantize") is not Impostor


def test_the_search_prefix_is_the_default_pipeline_before_quantize() -> None:
    assert DEFAULT[:DEFAULT.index("quantize")] == SEARCH_PREFIX
    assert set(MAPPING) <= set(DEFAULT)


class _Recorder:
    """Compile options that note which names a pass reads."""

    def __init__(self) -> None:
        self.read: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.read.add(name)
        return OPTIONS[name].default


@pytest.mark.parametrize("name", POOLED)
def test_a_pass_reads_exactly_the_options_declared_for_it(name: str) -> None:
    options = _Recorder()
    built = registry.get(name).from_options(options)
    assert built.name == name
    assert options.read == set(passes_options(name))


@pytest.mark.parametrize(("args", "message"), [
    ({"passes": ("fold-batchnorm", "select-cim", "quantize", "tile-wordlines")},
     "pass 'quantize' needs 'tile-wordlines' before it"),
    ({"disable": ("quantize",)}, "pass 'scale-to-shift' needs 'quantize' before it"),
    ({"disable": ("morph-channels",)}, "pass 'morph-channels' is not in the pipeline"),
    ({"passes": ("select-cim", "select-cim")}, "listed twice"),
    ({"stop_after": "nope"}, "unknown pass 'nope'"),
])
def test_pipeline_selection_errors(args: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        select(DEFAULT, **args)


def test_a_build_needs_placed_layers_and_names_the_earliest_stop() -> None:
    with pytest.raises(UsageError, match="place-bitlines must run after select-cim") as info:
        check_buildable(select(DEFAULT, stop_after="quantize"), DEFAULT)
    assert "earliest --stop-after that builds is place-bitlines" in (info.value.hint or "")
    check_buildable(select(DEFAULT, stop_after="place-bitlines"), DEFAULT)
    check_buildable(("fold-batchnorm",), DEFAULT)  # nothing selected for CIM: an all-digital build


def test_cimc_passes_lists_names_pipelines_options_and_summaries() -> None:
    code, out, _ = invoke("passes")
    assert code == 0
    for name in registry.names():
        assert name in out
    assert "--weight-step" in out and "fold an inference-mode BatchNormalization" in out
    assert "default: fold-batchnorm → select-cim" in out
    code, out, _ = invoke("--json", "passes")
    doc = json.loads(out)
    assert doc["pipelines"]["default"] == list(DEFAULT)
    entries = {e["name"]: e for e in doc["passes"]}
    assert list(entries)[:2] == ["morph-channels", "fold-batchnorm"]
    assert entries["tile-wordlines"]["pipelines"] == ["default", "mapping", "search-prefix", "pooled"]
    assert entries["pool-weights"]["pipelines"] == ["pooled"] and entries["pool-weights"]["needs"] == ["tile-wordlines"]
    assert doc["pipelines"]["pooled"] == list(POOLED) and POOLED.index("pool-weights") == DEFAULT.index("quantize")
    assert entries["scale-to-shift"]["needs"] == ["quantize"]
    assert entries["place-bitlines"]["options"] == ["--placement"]


def test_default_build_records_no_passes_and_disable_shift_is_no_shift(tmp_path: Path) -> None:
    assert invoke("compile", "tiny_cnn", "-o", str(tmp_path / "d"))[0] == 0
    assert "passes" not in manifest_options(tmp_path / "d")
    assert invoke("compile", "tiny_cnn", "--passes", ",".join(DEFAULT), "-o", str(tmp_path / "p"))[0] == 0
    assert build_hashes(tmp_path / "p") == build_hashes(tmp_path / "d")
    assert invoke("compile", "tiny_cnn", "--no-shift", "-o", str(tmp_path / "n"))[0] == 0
    assert invoke("compile", "tiny_cnn", "--disable", "scale-to-shift", "-o", str(tmp_path / "s"))[0] == 0
    assert build_hashes(tmp_path / "s") == build_hashes(tmp_path / "n")
    assert manifest_options(tmp_path / "s")["no_shift"] is True


def test_stop_after_and_mapping_only_builds_are_recorded_and_valid(tmp_path: Path) -> None:
    code, _, err = invoke("compile", "tiny_cnn", "--stop-after", "quantize", "-o", str(tmp_path / "q"))
    assert code == 2 and "earliest --stop-after that builds is place-bitlines" in err
    assert not (tmp_path / "q").exists()
    assert invoke("compile", "tiny_cnn", "--stop-after", "place-bitlines", "-o", str(tmp_path / "p"))[0] == 0
    assert manifest_options(tmp_path / "p")["passes"] == list(DEFAULT[:-1])
    code, _, _ = invoke("compile", "tiny_cnn", "--disable", "quantize,scale-to-shift", "-o", str(tmp_path / "m"))
    assert code == 0 and not (tmp_path / "m" / "quant.json").exists()
    assert manifest_options(tmp_path / "m")["passes"] == ["fold-batchnorm", *MAPPING]
    for build in ("p", "m"):
        assert invoke("validate", str(tmp_path / build))[0] == 0


def test_unknown_or_misordered_passes_exit_2(tmp_path: Path) -> None:
    code, _, err = invoke("compile", "tiny_cnn", "--passes", "fold-batchnorm,no-such-pass", "-o", str(tmp_path / "b"))
    assert code == 2 and "unknown pass 'no-such-pass'" in err and "scale-to-shift" in err
    code, _, err = invoke("compile", "tiny_cnn", "--passes", "select-cim,place-bitlines,tile-wordlines",
                          "-o", str(tmp_path / "b"))
    assert code == 2 and "pass 'place-bitlines' needs 'tile-wordlines' before it" in err
    code, _, err = invoke("compile", "tiny_cnn", "--disable", "quantize", "-o", str(tmp_path / "b"))
    assert code == 2 and "'scale-to-shift' needs 'quantize'" in err
    code, _, err = invoke("compile", "tiny_cnn", "--passes", "morph-channels", "-o", str(tmp_path / "b"))
    assert code == 2 and "--morph" in err
