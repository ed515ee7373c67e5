"""``cimc qat``: quantization-aware training of an ONNX file or zoo model, written back as ONNX.

    cimc qat model.onnx --data cifar10 --data-root ~/cifar --phase both --epochs 10 -o model.qat.onnx

Under ``torchrun`` (``torchrun --nproc_per_node=N $(which cimc) qat ...``) the N processes
train together (DDP, ``cimc.train.ddp``): ``--batch-size`` is the global batch they share, so
the result is the single-process one; rank 0 alone prints and writes the output file and the
checkpoint, and every rank reports the same accuracies (the test split sharded, counts summed).

The output holds BN-folded weights and every step size (``metadata_props["cimc.quant"]``),
ready for ``cimc compile``. ``--w-bits/--a-bits/--adc-bits`` are the bits of every layer
(default: the macro's cell, DAC and ADC bits) and ``--bits FILE`` sets them per layer (JSON or
TOML, ``{"conv1": {"w_bits": 8}}``); the macro's cell and DAC widths come from ``--macro``,
and wider layers are trained bit-sliced. ``--weight-pool P`` (with ``--pool-vector``,
``--pool-error-bits``, ``--pool-error-prune``) trains with a shared weight pool in the loop
(``cimc.train.pool``); compile the result with the same pool options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cimc.cli.common import FiniteFloat, State, echo, guarded, parse_shapes
from cimc.cli.options import DATA_HELP, POOL, PREPROCESS, declared


@click.command("qat")
@click.argument("model")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="ONNX file to write (folded weights + step sizes).")
@click.option("--phase", type=click.Choice(["1", "2", "both"]), default="both", show_default=True)
@click.option("--data", "data_name", required=True, help=DATA_HELP)
@declared("data_root", *PREPROCESS)
@click.option("--epochs", type=click.IntRange(min=0), default=10, show_default=True, help="Epochs per phase.")
@click.option("--phase2-epochs", type=click.IntRange(min=0), help="Epochs of phase 2 (default: --epochs).")
@click.option("--float-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Train the float model first (for untrained zoo models).")
@click.option("--lr", type=FiniteFloat(), help="Learning rate of every phase (default: the paper's per phase).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Global batch: under torchrun the processes share it.")
@click.option("--trainer", "trainer_spec", help="Your own fit(): package.module:function.")
@declared("granularity")
@click.option("--learn-adc-step", is_flag=True, help="Learn S_ADC in phase 2 (the paper keeps it fixed).")
@declared("macro", "tiling", "map_fc", "w_bits", "a_bits", "adc_bits", "layer_bits")
@declared(*POOL)
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint file: resumed from when it exists, rewritten after every epoch.")
@declared("input_shapes")
@click.option("--seed", default=0, show_default=True)
@click.pass_obj
@guarded
def qat_cmd(state: State, model: str, output: Path, phase: str, data_name: str, data_root: str | None,
            image_size: int | None, mean: str | None, std: str | None,
            epochs: int, phase2_epochs: int | None, float_epochs: int, lr: float | None, batch_size: int,
            trainer_spec: str | None, granularity: str, learn_adc_step: bool, macro: str, tiling: str,
            map_fc: bool, w_bits: int | None, a_bits: int | None, adc_bits: int | None, bits_file: Path | None,
            weight_pool: int | None, pool_vector: int | None, pool_error_bits: int | None,
            pool_error_prune: float | None, resume: Path | None, input_shape: tuple[str, ...], seed: int) -> None:
    """Quantization-aware training of MODEL (ONNX file or zoo name) for a CIM macro."""
    from cimc.api import CompileOptions, load_source
    from cimc.cli.quant import read_bits
    from cimc.data import Preprocess
    from cimc.macro import load_macro
    from cimc.progress import Progress
    from cimc.train import QatOptions, QuantConfig, export_onnx, load_train_data, load_trainer, run_qat
    from cimc.train.ddp import finish, is_main_process, write_digest
    from cimc.train.trainer import DEFAULT_LR

    shown = not state.as_json and is_main_process()
    with Progress(enabled=shown) as progress:
        progress.phase(f"importing {model}")
        graph, _ = load_source(model, CompileOptions(input_shapes=parse_shapes(input_shape)))
        spec = load_macro(macro)
        config = QuantConfig.for_macro(spec, w_bits=w_bits, a_bits=a_bits, adc_bits=adc_bits,
                                       layer_bits=read_bits(bits_file), tiling=tiling, granularity=granularity,
                                       learn_adc_step=learn_adc_step, map_fc=map_fc,
                                       **_pool(weight_pool, pool_vector, pool_error_bits, pool_error_prune))
        classes = graph.shape(graph.outputs[0])[-1]
        progress.phase(f"loading {data_name}")
        data = load_train_data(data_name, root=data_root, input_shape=graph.shape(graph.inputs[0]),
                               batch_size=batch_size, classes=classes, seed=seed,
                               preprocess=Preprocess.from_options(image_size, mean, std))
        rates = dict(DEFAULT_LR) if lr is None else dict.fromkeys(DEFAULT_LR, lr)
        options = QatOptions(phases=phase, epochs=epochs, phase2_epochs=phase2_epochs, float_epochs=float_epochs,
                             lr=rates, config=config, checkpoint=resume, seed=seed, progress=not state.as_json,
                             trainer=load_trainer(trainer_spec) if trainer_spec else QatOptions().trainer)
        with progress.beside("training"):  # its own bars (cimc.train.progress)
            result = run_qat(graph, data, options)
        write_digest(result.module, result.metrics)
        if is_main_process():
            progress.phase(f"exporting {output.name}")
            export_onnx(result.module, output)
    if is_main_process():
        _report(state, result.metrics, output)
    finish()


def _pool(size: int | None, vector: int | None, error_bits: int | None, prune: float | None) -> dict[str, Any]:
    """The ``QuantConfig`` fields of ``--weight-pool`` and its companions (given ones only)."""
    given = {"weight_pool": size, "pool_vector": vector, "pool_error_bits": error_bits, "pool_error_prune": prune}
    return {k: v for k, v in given.items() if v is not None}


def _report(state: State, metrics: dict[str, dict[str, float]], output: Path) -> None:
    if state.as_json:
        echo(json.dumps({"output": str(output), "metrics": metrics}, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="QAT")
    for header in ("phase", "epochs", "train loss", "test accuracy"):
        table.add_column(header, justify="right")
    for phase, m in metrics.items():
        table.add_row(phase, f"{m.get('epochs', float('nan')):.0f}", f"{m.get('train_loss', float('nan')):.4f}",
                      f"{100 * m.get('test_acc', float('nan')):.2f}%")
    Console().print(table)
    echo(f"wrote {output}")
