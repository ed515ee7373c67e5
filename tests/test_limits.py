"""Resource limits: declared once in ``cimc.options`` (the frontend's defaults are those), documented
in the README's table with their defaults, given to ``cimc compile``, and each refusal's hint
names the option that raises it; raising it lets the same model through."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import cimc.frontend.fold_constants as folding
from cimc import limits
from cimc.api import CompileOptions
from cimc.cli.main import main
from cimc.data import files
from cimc.errors import ResourceLimitError, UsageError
from cimc.frontend import budget, import_onnx, loader
from cimc.options import OPTIONS
from tests.onnx_builders import make_model, node, rand

README = Path(__file__).resolve().parent.parent / "README.md"
LIMITS = {"max_model_bytes": limits.MODEL_BYTES, "max_tensor_bytes": limits.TENSOR_BYTES,
          "max_data_bytes": limits.DATA_FILE_BYTES}
I64 = np.int64


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stderr


def test_declared_once_and_used_as_the_defaults() -> None:
    assert LIMITS == {"max_model_bytes": 2**31, "max_tensor_bytes": 2**30, "max_data_bytes": 2**30}  # the README's
    assert {k: OPTIONS[k].default for k in LIMITS} == LIMITS
    readers = {"max_model_bytes": loader.DEFAULT_MAX_BYTES, "max_tensor_bytes": budget.DEFAULT_MAX_TENSOR_BYTES,
               "max_data_bytes": files.MAX_FILE_BYTES}
    assert readers == LIMITS and folding.DEFAULT_BUDGET == budget.DEFAULT_MAX_TENSOR_BYTES
    options = CompileOptions()
    assert {k: getattr(options, k) for k in LIMITS} == LIMITS


def test_the_readme_table_lists_each_limit_with_its_default() -> None:
    text = README.read_text()
    section = text[text.index("### Resource limits"):]
    section = section[:section.index("\n## ")]
    rows = {m.group(3): m.group(2) for m in re.finditer(r"^\| (.+?) \| (.+?) \| `(--[a-z-]+) N` \|$", section, re.M)}
    gib = {o.flag: f"{o.default // 2**30} GiB" for o in (OPTIONS[k] for k in LIMITS)}
    assert rows == gib


def _human(n: int) -> str:
    return f"{n // limits.GiB} GiB" if n % limits.GiB == 0 else f"{n // limits.MiB} MiB" if n % limits.MiB == 0 \
        else f"{n:,}"


def test_the_readme_table_shows_every_declared_limit() -> None:
    """Every constant of ``cimc.limits`` is in the README's table, and the modules that check
    the fixed ones take them from there."""
    text = README.read_text()
    section = text[text.index("### Resource limits"):text.index("\n## ", text.index("### Resource limits"))]
    values = {k: v for k, v in vars(limits).items() if k.isupper() and k not in ("GiB", "MiB")}
    shown = {k: _human(v) if k != "IMAGE_PIXELS" else f"{v // limits.MiB} Mi pixels" for k, v in values.items()}
    assert all(f" {h} " in section or f" {h};" in section or f"; {h} " in section for h in shown.values()), shown
    from cimc.build import directory
    from cimc.data import images, preprocess

    assert (files.MAX_FILE_BYTES, files.MAX_IMAGE_BYTES, files.MAX_FILES, images.MAX_PIXELS, images.MAX_IMAGES,
            preprocess.MAX_IMAGE_SIZE, directory.MAX_MANIFEST_BYTES, OPTIONS["image_size"].high) == (
        limits.DATA_FILE_BYTES, limits.IMAGE_FILE_BYTES, limits.FOLDER_ENTRIES, limits.IMAGE_PIXELS,
        limits.DATASET_IMAGES, limits.IMAGE_SIZE, limits.MANIFEST_BYTES, limits.IMAGE_SIZE)


def _conv(shape: tuple[int, ...]) -> onnx.ModelProto:
    return make_model([node("Conv", ["x", "w"], ["y"])], {"x": shape}, ["y"], {"w": rand(4, 3, 1, 1)})


def test_every_refusal_names_its_option(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_conv((1, 3, 16, 16)), str(path))
    cases = [  # the refusal, then the same model through with the limit raised
        (lambda m: import_onnx(path, max_bytes=m), path.stat().st_size - 1, "--max-model-bytes"),
        (lambda m: import_onnx(_conv((1, 3, 16, 16)), max_tensor_bytes=m), 4 * 16 * 16 * 4 - 1, "--max-tensor-bytes"),
    ]
    for call, limit, flag in cases:
        with pytest.raises(ResourceLimitError) as info:
            call(limit)
        assert flag in (info.value.hint or ""), info.value
        assert call(limit + 1).outputs == ["y"]


def test_folding_is_held_to_the_tensor_budget_in_bytes() -> None:
    """VGG19's way: a weight built by ConstantOfShape from its shape, over the old element budget
    (2^26) but well under 1 GiB, folds; over the budget, the hint names the option."""
    fill = onnx.helper.make_tensor("v", onnx.TensorProto.FLOAT, [1], [0.02])
    nodes = [node("ConstantOfShape", ["shape"], ["w"], value=fill), node("MatMul", ["x", "w"], ["y"])]
    model = make_model(nodes, {"x": (1, 2**13)}, ["y"], {"shape": np.array([2**13, 2**13 + 8], I64)})
    elements = 2**13 * (2**13 + 8)
    assert elements > 2**26
    with pytest.raises(ResourceLimitError, match=rf"ConstantOfShape.*{4 * elements} bytes") as info:
        import_onnx(model, max_tensor_bytes=4 * elements - 1)
    assert "--max-tensor-bytes" in (info.value.hint or "")
    graph = import_onnx(model)  # default budget: 268 MB folds
    assert graph.shape("y") == (1, 2**13 + 8) and next(iter(graph.initializers.values())).dtype == np.float32


def test_compile_takes_the_limit_options(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_conv((1, 3, 8, 8)), str(path))
    code, err = _cli("compile", str(path), "-o", str(tmp_path / "b"), "--max-tensor-bytes", "100")
    assert code == 5 and "hint: use a smaller --input-shape (batch size or image size), or raise the budget " \
                          "with --max-tensor-bytes" in err
    code, err = _cli("compile", str(path), "-o", str(tmp_path / "b"), "--max-tensor-bytes", "3000")
    assert code == 5 and "--calib-size" in err  # 16 samples need 40,960 bytes of the 12 × 3,000 budget
    args = ("--max-tensor-bytes", "3000", "--calib-size", "1")
    assert _cli("compile", str(path), "-o", str(tmp_path / "b"), *args)[0] == 0
    code, err = _cli("compile", str(path), "-o", str(tmp_path / "b"), "--max-tensor-bytes", "0")
    assert code == 2 and "--max-tensor-bytes" in err


def test_compile_takes_the_data_limit(tmp_path: Path) -> None:
    """A --calib file over --max-data-bytes is refused naming the option; raised, it calibrates."""
    path, calib = tmp_path / "m.onnx", tmp_path / "calib.npz"
    onnx.save(_conv((1, 3, 8, 8)), str(path))
    np.savez(calib, x=rand(8, 3, 8, 8), y=np.zeros(8, I64))  # about 6 kB
    base = ("compile", str(path), "-o", str(tmp_path / "b"), "--calib", str(calib))
    code, err = _cli(*base, "--max-data-bytes", "1000")
    assert code == 2 and "calib.npz" in err and "hint: raise the limit with --max-data-bytes" in err
    assert _cli(*base, "--max-data-bytes", "100000")[0] == 0


def test_the_data_limit_holds_within_its_block_only(tmp_path: Path) -> None:
    (tmp_path / "a.npy").write_bytes(b"x" * 20)
    with files.data_limit(10), pytest.raises(UsageError, match="20 bytes, more than the limit of 10 bytes") as info:
        files.read_bytes(tmp_path / "a.npy", tmp_path)
    assert "--max-data-bytes" in (info.value.hint or "")
    assert files.read_bytes(tmp_path / "a.npy", tmp_path) == b"x" * 20
