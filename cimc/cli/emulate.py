"""``cimc emulate BUILD``: run a build directory on the bit-accurate macro emulator.

    cimc emulate build/ --inputs x.npy [--save-outputs y.npy]   # outputs and top-1 per sample
    cimc emulate build/ --data digits                            # accuracy on the test split
    cimc emulate build/ --data cifar10 --golden golden/          # + per-layer test vectors

The build is checked first (hashes, schemas, shapes, code ranges, every column placed);
a broken build exits with code 8 naming what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cimc.cli.common import State, echo, guarded
from cimc.cli.options import PREPROCESS, declared
from cimc.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from cimc.data.preprocess import Preprocess
    from cimc.emulator import Emulator


@click.command("emulate")
@click.argument("build", type=click.Path(file_okay=False, path_type=Path))
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A .npy batch (or one sample) for the model's input.")
@click.option("--data", help="Labelled data: a dataset name (digits, cifar10, mnist), an image folder "
                             "(DIR/<class>/*.png) or an .npz with x and y; report accuracy on its test split.")
@declared("data_root", *PREPROCESS)
@click.option("--limit", type=click.IntRange(min=1), help="Use at most this many samples.")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True, help="Samples per run.")
@click.option("--golden", type=click.Path(file_okay=False, path_type=Path),
              help="Write per-layer test vectors (input codes, ADC codes, sums, outputs) here.")
@click.option("--golden-samples", type=click.IntRange(min=1), default=8, show_default=True,
              help="Samples in the golden vectors.")
@click.option("--save-outputs", type=click.Path(dir_okay=False, path_type=Path), help="Write the outputs (.npy).")
@click.pass_obj
@guarded
def emulate_cmd(state: State, build: Path, inputs_file: Path | None, data: str | None, data_root: str | None,
                image_size: int | None, mean: str | None, std: str | None, limit: int | None, batch: int,
                golden: Path | None, golden_samples: int,
                save_outputs: Path | None) -> None:
    """Run BUILD on the bit-accurate macro emulator."""
    from cimc.emulator import Emulator
    from cimc.progress import Progress

    if (inputs_file is None) == (data is None):
        raise UsageError("pass exactly one of --inputs FILE.npy and --data SOURCE")
    with Progress(enabled=not state.as_json) as progress:
        progress.phase(f"opening and checking {build}")
        emulator = Emulator.open(build)
        pre = _preprocess(emulator, image_size, mean, std)
        progress.phase(f"loading {inputs_file.name if inputs_file is not None else data}")
        x, labels = _samples(emulator, inputs_file, data, data_root, pre)
        x = x[:limit] if limit else x
        progress.phase("emulating samples", total=int(x.shape[0]))
        outputs = _run_batches(emulator, x, batch, progress.advance)
        result = _write(emulator, x, labels, outputs, build, data, save_outputs, golden, golden_samples, progress)
    _print(state, result)


def _write(emulator: Emulator, x: np.ndarray, labels: np.ndarray | None, outputs: np.ndarray, build: Path,
           data: str | None, save_outputs: Path | None, golden: Path | None, golden_samples: int,
           progress: Any) -> dict[str, Any]:
    """The result document; the outputs and golden vectors written where asked."""
    import numpy as np

    from cimc.emulator import write_golden

    result: dict[str, Any] = {"build": str(build), "samples": int(x.shape[0]),
                              "output_shape": list(outputs.shape), "top1": _top1(outputs).tolist()}
    if labels is not None:
        result["accuracy"] = float((_top1(outputs) == labels[: x.shape[0]]).mean())
        result["dataset"] = data
    if save_outputs is not None:
        from cimc.untrusted import refuse_special_output

        refuse_special_output(Path(save_outputs))
        np.save(save_outputs, outputs, allow_pickle=False)
    if golden is not None:
        progress.phase(f"golden vectors ({min(golden_samples, int(x.shape[0]))} samples)")
        write_golden(golden, emulator, x[:golden_samples])
        result["golden"] = str(golden)
    return result


def _preprocess(emulator: Emulator, image_size: int | None, mean: str | None, std: str | None) -> Preprocess:
    """The image preprocessing: each option as given, else as the build was compiled with
    (its manifest's options), else the default."""
    from cimc.build.reader import read_build
    from cimc.data.preprocess import Preprocess

    recorded = read_build(emulator.files.path).manifest.get("options", {})
    return Preprocess.from_options(image_size if image_size is not None else recorded.get("image_size"),
                                   mean if mean is not None else recorded.get("mean"),
                                   std if std is not None else recorded.get("std"))


def _samples(emulator: Emulator, inputs_file: Path | None, data: str | None,
             root: str | None, pre: Preprocess) -> tuple[np.ndarray, np.ndarray | None]:
    import numpy as np

    shape = tuple(emulator.inputs[0].shape)
    if inputs_file is not None:
        from cimc.data.files import load_arrays

        arrays = load_arrays(inputs_file, inputs_file.parent)  # cimc.untrusted: regular, bounded
        if len(arrays) != 1:
            raise UsageError(f"{inputs_file.name} holds {len(arrays)} arrays; --inputs takes one (.npy)")
        x = np.asarray(next(iter(arrays.values())), dtype=np.float32)
        return (x[None] if x.shape == shape[1:] else x), None
    from cimc import data as datasets

    ds = datasets.load_dataset(str(data), "test", root, shape=shape, preprocess=pre)
    return ds.x, ds.y


def _run_batches(emulator: Emulator, x: np.ndarray, batch: int, advance: Callable[[int], None]) -> np.ndarray:
    """The first output over all samples, ``batch`` at a time (``advance(n)`` after each)."""
    import numpy as np

    parts = []
    for i in range(0, x.shape[0], batch):
        parts.append(next(iter(emulator.run(x[i:i + batch]).outputs.values())))
        advance(parts[-1].shape[0])
    return np.concatenate(parts)


def _top1(outputs: np.ndarray) -> np.ndarray:
    return outputs.reshape(outputs.shape[0], -1).argmax(axis=1)


def _print(state: State, result: dict[str, Any]) -> None:
    if state.as_json:
        echo(json.dumps(result, sort_keys=True))
        return
    echo(f"{result['samples']:,} sample(s) through {result['build']}: outputs {result['output_shape']}")
    if "accuracy" in result:
        echo(f"top-1 accuracy on {result['dataset']}: {100 * result['accuracy']:.2f}%")
    else:
        shown = result["top1"][:20]
        echo("top-1 class: " + " ".join(str(c) for c in shown) + (" …" if len(result["top1"]) > 20 else ""))
    if "golden" in result:
        echo(f"golden vectors in {result['golden']}/")
