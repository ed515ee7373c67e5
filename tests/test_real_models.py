"""Real architectures (``tests/models``) exported as users export them, through cimc.

For every architecture × exporter (× BatchNorm folded by torch / kept in the file, for ResNet-18 and
MobileNetV2):

(a) onnxruntime on the exported file matches torch (``EXPORT_TOL``);
(b) cimc's IR interpreter on the imported graph matches onnxruntime on the float model (``IR_TOL``);
(c) ``compile`` + ``validate`` + the emulator: emulator == onnxruntime(``model.cim.onnx``) == the numpy
    reference, bit for bit, on every layer and output (``tests.cim_helpers.assert_three_way``); one case
    also runs the ``cimc`` command line.

What cimc cannot do yet is listed in ``GAPS``: such a case is an ``xfail(strict=True)`` that only
accepts the predicted error (an ``UnsupportedError`` naming exactly those ops). When an op lands the
case passes, the strict xfail fails, and its ``GAPS`` entry must go; a different error fails at once.

The small variants run by default — all with the legacy exporter, ResNet-18 also with the dynamo
exporter (a dynamo export costs 3–40 s here, against 0.1–2 s for the legacy one); the other dynamo
exports, the command-line run and the 224×224 variants are ``slow``. On a shared 2-core AMD EPYC:
default part 33 s (56 passed, 14 xfailed), ``-m slow`` 7.3 min (78 passed, 82 xfailed) before
ConvNeXt's ops, the CastLike fold, ConvTranspose and Resize landed; after, no case is a gap.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cimc.api import compile_model
from cimc.emulator.validate import validate_build
from cimc.errors import CimcError, UnsupportedError
from cimc.frontend import import_onnx
from cimc.ir.interpreter import run
from tests.cim_helpers import assert_three_way
from tests.models import REGISTRY, build
from tests.models.export import EXPORTERS, export, fuse_batchnorm

pytestmark = pytest.mark.torch  # the architectures are torch modules

EXPORT_TOL = 1e-4  # |ort - torch| <= EXPORT_TOL · (1 + max|torch|), elementwise
IR_TOL = 1e-4  # |interpreter - ort| <= IR_TOL · (1 + max|ort|)
FULL_TOL_FACTOR = 10  # 224×224 networks are deeper in float error


@dataclass(frozen=True)
class Gap:
    """A predicted failure: an ``UnsupportedError`` naming exactly ``ops``."""

    ops: tuple[str, ...]

    @property
    def reason(self) -> str:
        return f"unsupported op(s): {', '.join(self.ops)}"

    def matches(self, error: BaseException) -> bool:
        named = set(re.findall(r"([A-Za-z0-9_.]+) \(node '", str(error).split("(hint:")[0]))
        return isinstance(error, UnsupportedError) and named == set(self.ops)


#: (architecture, exporter) or (architecture, exporter, variant) → the error cimc gives today.
#: (ReduceMean, Split, HardSwish and HardSigmoid are supported since the op table took them; Gelu,
#: LayerNormalization and Gather since ConvNeXt's ops were added; ConvTranspose and Resize since the
#: spatial ops did.)
GAPS: dict[tuple[str, ...], Gap] = {
}

BN_VARIANTS = ("resnet18", "mobilenet_v2")  # also exported with BN folded in torch, and with BN kept
DEFAULT_DYNAMO = (("resnet18", "plain"),)  # the dynamo exports in the default (non-slow) run


@dataclass(frozen=True)
class Case:
    name: str
    exporter: str
    variant: str = "plain"  # plain | fuse_bn | keep_bn
    small: bool = True

    @property
    def id(self) -> str:
        return f"{self.name}-{self.exporter}-{self.variant}-{'small' if self.small else 'full'}"

    @property
    def gap(self) -> Gap | None:
        return GAPS.get((self.name, self.exporter, self.variant), GAPS.get((self.name, self.exporter)))

    @property
    def tol(self) -> float:
        return 1.0 if self.small else FULL_TOL_FACTOR


def _cases() -> list[Case]:
    cases = []
    for small in (True, False):
        for name in REGISTRY:
            for exporter in EXPORTERS if small else ("legacy",):  # 224×224 dynamo: scripts/real_models.py (time)
                variants = ("plain", "fuse_bn", "keep_bn") if name in BN_VARIANTS else ("plain",)
                cases += [Case(name, exporter, v, small) for v in variants]
    return cases


def _param(case: Case, expect_gap: bool) -> object:
    marks: list[pytest.MarkDecorator] = []
    if not case.small or (case.exporter == "dynamo" and (case.name, case.variant) not in DEFAULT_DYNAMO):
        marks.append(pytest.mark.slow)
    if expect_gap and case.gap is not None:
        marks.append(pytest.mark.xfail(strict=True, raises=KnownGap, reason=case.gap.reason))
    return pytest.param(case, id=case.id, marks=marks)


class KnownGap(Exception):
    """The failure ``GAPS`` predicts for this case (the only failure its xfail accepts)."""


@contextlib.contextmanager
def known_gap(case: Case) -> Iterator[None]:
    """Turn the predicted error into ``KnownGap``; any other error propagates unchanged."""
    try:
        yield
    except CimcError as error:
        if case.gap is not None and case.gap.matches(error):
            raise KnownGap(str(error)) from error
        raise


@dataclass(frozen=True)
class Exported:
    path: Path
    x: np.ndarray  # a batch of two: the export's example input and a second N(0, 1) sample
    torch_out: np.ndarray


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; more threads only oversubscribe it
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> functools.partial[Exported]:
    """``exported(case)``: the case's ONNX file, exported once per session."""
    return functools.partial(_export, tmp_path_factory.mktemp("real-models"))


@functools.cache
def _model(name: str, small: bool) -> tuple[torch.nn.Module, torch.Tensor]:
    return build(name, small)


_EXPORTS: dict[Case, Exported] = {}


def _export(folder: Path, case: Case) -> Exported:
    if case not in _EXPORTS:
        model, x = _model(case.name, case.small)
        path = folder / f"{case.id}.onnx"
        export(model, x, path, case.exporter,  # type: ignore[arg-type]
               fuse_bn=case.variant == "fuse_bn", keep_bn=case.variant == "keep_bn")
        batch = torch.cat([x, torch.randn(x.shape, generator=torch.Generator().manual_seed(99))]) if case.small else x
        with torch.no_grad():
            torch_out = torch.cat([model(b[None]) for b in batch]).numpy()
        _EXPORTS[case] = Exported(path, batch.numpy(), torch_out)
    return _EXPORTS[case]


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime on ``path``, one sample at a time (the exports have a static batch of one)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(x.shape[0])])


def assert_close(actual: np.ndarray, expected: np.ndarray, tol: float) -> None:
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * (1.0 + float(np.abs(expected).max())))


CASES = _cases()


@pytest.mark.parametrize("case", [_param(c, expect_gap=False) for c in CASES])
def test_export_matches_torch(exported: functools.partial[Exported], case: Case) -> None:
    e = exported(case)
    assert_close(run_ort(e.path, e.x), e.torch_out, EXPORT_TOL * case.tol)


@pytest.mark.parametrize("case", [_param(c, expect_gap=True) for c in CASES])
def test_interpreter_matches_onnxruntime(exported: functools.partial[Exported], case: Case) -> None:
    e = exported(case)
    with known_gap(case):
        graph = import_onnx(e.path)
    ours = np.concatenate([run(graph, {graph.inputs[0]: e.x[i:i + 1]})[graph.outputs[0]]
                           for i in range(e.x.shape[0])])
    assert_close(ours, run_ort(e.path, e.x), IR_TOL * case.tol)


@pytest.mark.parametrize("case", [_param(c, expect_gap=True) for c in CASES])
def test_compile_validate_emulate(exported: functools.partial[Exported], case: Case, tmp_path: Path) -> None:
    e = exported(case)
    with known_gap(case):
        result = compile_model(e.path, tmp_path / "build", calib_size=4 if case.small else 16)
    validation = validate_build(result.out_dir)
    assert validation.ok, [str(v) for v in validation.violations]
    assert_three_way(result.out_dir, result.graph, e.x[:1])


CLI = "import sys; from cimc.cli.main import main; sys.argv[0] = 'cimc'; main()"


def _cimc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.slow
def test_command_line(exported: functools.partial[Exported], tmp_path: Path) -> None:
    """``cimc compile`` / ``validate`` / ``emulate`` as a user runs them, on ResNet-18 (legacy export):
    the emulator's outputs equal onnxruntime's on ``model.cim.onnx`` exactly."""
    e = exported(Case("resnet18", "legacy"))
    build_dir, x_file, y_file = tmp_path / "build", tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x_file, e.x[:1])
    for args in (("compile", str(e.path), "-o", str(build_dir)), ("validate", str(build_dir)),
                 ("emulate", str(build_dir), "--inputs", str(x_file), "--save-outputs", str(y_file))):
        done = _cimc(*args)
        assert done.returncode == 0, (args, done.stderr)
    manifest = json.loads((build_dir / "manifest.json").read_text())
    assert manifest["input"]["name"] == e.path.name
    np.testing.assert_array_equal(np.load(y_file), run_ort(build_dir / "model.cim.onnx", e.x[:1]))


#: torchvision's documented parameter counts (``weights.meta["num_params"]``) of the full networks.
PUBLISHED_PARAMS = {"resnet18": 11_689_512, "resnet50": 25_557_032, "mobilenet_v2": 3_504_872,
                    "mobilenet_v3_small": 2_542_856, "efficientnet_b0": 5_288_548, "densenet121": 7_978_856,
                    "shufflenet_v2": 2_278_604, "squeezenet1_1": 1_235_496, "regnet_x_400mf": 5_495_976,
                    "regnet_y_400mf": 4_344_144}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_published_parameter_counts(name: str) -> None:
    """The full variants have exactly torchvision's parameter counts (a check of every width, depth,
    expansion ratio, SE size and bias)."""
    arch = REGISTRY[name]
    with torch.device("meta"):
        model = arch.builder(**arch.full)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", BN_VARIANTS)
def test_fuse_batchnorm(name: str) -> None:
    """Folding BN into the convs in torch removes every BatchNorm2d and keeps the outputs."""
    model, x = _model(name, True)
    fused = fuse_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        assert_close(fused(x).numpy(), model(x).numpy(), 1e-4)


def test_builds_are_deterministic() -> None:
    a, xa = build("mobilenet_v3_small", small=True)
    b, xb = build("mobilenet_v3_small", small=True)
    assert torch.equal(xa, xb)
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), key
