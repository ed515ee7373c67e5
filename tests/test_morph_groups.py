"""Channel groups: ties through BN, residual Add (incl. ResNet18's Pad shortcut), Concat,
depthwise convs and Flatten→Gemm; fixed inputs/outputs and ops the rules cannot follow."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.ir import Node, TensorInfo
from cimc.morph.channel_groups import analyze, connected_components
from tests.ir_builders import add_conv, conv_bn_relu, graph_with_input
from tests.morph_builders import mixed_graph, zoo

pytestmark = pytest.mark.torch  # the zoo or the training hook


def test_resnet18_groups_follow_the_residual_stream_and_the_pad_shortcut() -> None:
    g = zoo("resnet18")
    groups = analyze(g)
    sizes = dict(zip(groups.group_names, groups.group_size.tolist(), strict=True))
    # stream of stage 0 (stem + every block-0 conv2), then the channels each stage adds, and conv1 outputs
    assert sizes == {"input": 3, "conv2d": 64, "conv2d_1": 64, "conv2d_3": 64, "conv2d_5": 128,
                     "conv2d_6[64:128]": 64, "conv2d_7": 128, "conv2d_9": 256, "conv2d_10[128:256]": 128,
                     "conv2d_11": 256, "conv2d_13": 512, "conv2d_14[256:512]": 256, "conv2d_15": 512, "logits": 10}
    assert groups.group_fixed.tolist() == [True] + [False] * 12 + [True]
    stream0 = groups.classes("conv2d")  # the stem conv output
    add2 = groups.classes("add_2")      # first downsampling block: Add(bn2, Pad(MaxPool(x)))
    np.testing.assert_array_equal(add2[:64], stream0)  # first C_in channels = the block input's
    pad_zeros = groups.classes("pad")[64:]
    np.testing.assert_array_equal(pad_zeros, add2[64:])  # zeros tied to the block's new channels
    assert set(groups.classes("relu_16").tolist()) >= set(stream0.tolist())  # stage-0 stream reaches the end
    assert groups.copies("relu_16").tolist() == [0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0]


def test_mixed_graph_ties_depthwise_concat_pad_and_flatten() -> None:
    groups = analyze(mixed_graph())
    assert groups.group_names == ["x", "c1.y", "c2.y", "c3.y[14:17]", "fc.y"]
    assert groups.group_size.tolist() == [4, 8, 6, 3, 5]
    assert groups.group_fixed.tolist() == [True, False, False, False, True]
    np.testing.assert_array_equal(groups.classes("dw.y"), groups.classes("r1.y"))  # depthwise tied to its input
    np.testing.assert_array_equal(groups.classes("cat.y"), np.r_[groups.classes("add1.y"), groups.classes("r2.y")])
    assert groups.tensors["flat.y"].mult == 9 and groups.tensors["flat.y"].count == 17
    widths = np.array([4, 5, 7, 2, 5])
    assert groups.channels("pad.y", widths) == 14 and groups.channels("cat.y", widths) == 12


def test_concat_of_a_tensor_with_itself_holds_its_group_twice() -> None:
    rng = np.random.default_rng(0)
    g = graph_with_input((1, 2, 4, 4))
    y = add_conv(g, "x", 5, 1, rng=rng, name="c")
    g.tensors["cat"] = TensorInfo("cat", (1, 10, 4, 4))
    g.add_node(Node("cat", "Concat", (y, y), ("cat",), {"axis": 1}))
    g.outputs.append(add_conv(g, "cat", 3, 1, rng=rng, name="d"))
    groups = analyze(g)
    assert groups.copies("cat").tolist() == [0, 2, 0]
    assert groups.channels("cat", np.array([2, 4, 3])) == 8


def test_grouped_conv_and_unknown_ops_fix_their_channels() -> None:
    rng = np.random.default_rng(0)
    g = graph_with_input((1, 4, 4, 4))
    a = add_conv(g, "x", 8, 3, pad=1, rng=rng, name="a")
    b = add_conv(g, a, 8, 3, pad=1, group=2, rng=rng, name="grouped")  # fixes a's and its own channels
    c = add_conv(g, b, 6, 3, pad=1, rng=rng, name="c")
    g.tensors["t"] = TensorInfo("t", (1, 4, 4, 6))
    g.add_node(Node("t", "Transpose", (c,), ("t",), {"perm": (0, 2, 3, 1)}))  # moves channels: fixed
    g.outputs.append("t")
    groups = analyze(g)
    assert groups.group_fixed.all()


def test_plain_chain_has_one_changeable_group() -> None:
    groups = analyze(conv_bn_relu(cin=3, cout=7))
    assert groups.group_size.tolist() == [3, 7]
    assert groups.group_fixed.tolist() == [True, True]  # the relu output is the graph output
    assert [bn.node for bn in groups.bns] == ["bn"]


@pytest.mark.parametrize("size", [1, 7, 300])
def test_connected_components_match_a_reference_union_find(size: int) -> None:
    rng = np.random.default_rng(size)
    u, v = rng.integers(0, size, (2, size // 2 + 1))
    labels = connected_components(size, [(u, v)])
    parent = list(range(size))

    def find(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    for a, b in zip(u.tolist(), v.tolist(), strict=True):
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    assert labels.tolist() == [find(a) for a in range(size)]


@pytest.mark.parametrize(("op", "axes", "keepdims", "follows"), [
    ("ReduceMean", (3,), 1, True), ("ReduceSum", (2, 3), 1, True), ("ReduceMax", (1,), 1, False),
    ("ReduceMean", (0,), 0, False), ("Neg", None, None, True), ("Sub", None, None, True)])
def test_reductions_and_elementwise_ops_follow_spatial_channels(op: str, axes: tuple[int, ...] | None,
                                                                keepdims: int | None, follows: bool) -> None:
    """A reduction over spatial axes (or an elementwise op) keeps the conv's channels changeable;
    one over the channels (or dropping the batch axis, which moves them) fixes them."""
    rng = np.random.default_rng(0)
    g = graph_with_input((1, 3, 4, 4))
    a = add_conv(g, "x", 6, 3, pad=1, rng=rng, name="a")
    if axes is None:
        inputs, attrs, shape = ((a, a) if op == "Sub" else (a,)), {}, (1, 6, 4, 4)
    else:
        attrs = {"axes": axes, "keepdims": keepdims}
        shape = tuple(1 if i in axes else d for i, d in enumerate((1, 6, 4, 4)) if keepdims or i not in axes)
    g.tensors["r"] = TensorInfo("r", shape)
    g.add_node(Node("r", op, inputs if axes is None else (a,), ("r",), attrs))
    g.outputs.append(add_conv(g, "r", 2, 1, rng=rng, name="b") if len(shape) == 4 else "r")
    groups = analyze(g)
    assert bool(groups.group_fixed[groups.group_names.index("a.y")]) is not follows, groups.group_names


@pytest.mark.parametrize(("op", "attrs", "consts", "follows"), [
    ("Gelu", {"approximate": "none"}, (), True), ("Erf", {}, (), True), ("Tanh", {}, (), True),
    ("Pow", {"exponent": 2.0}, (), True), ("Cast", {"to": 1}, (), True),
    ("LayerNormalization", {"axis": 2, "epsilon": 1e-5}, ((4, 4),), True),
    ("LayerNormalization", {"axis": 1, "epsilon": 1e-5}, ((6, 1, 1),), False),
    ("InstanceNormalization", {"epsilon": 1e-5}, ((6,), (6,)), False),
    ("GroupNormalization", {"num_groups": 2, "epsilon": 1e-5}, ((6,), (6,)), False),
    ("PRelu", {}, ((1,),), True), ("PRelu", {}, ((6, 1, 1),), False),
    ("Max", {}, ((4,),), True), ("Mean", {}, ((6, 1, 1),), False)])
def test_new_ops_follow_or_fix_the_channels(op: str, attrs: dict[str, object], consts: tuple[tuple[int, ...], ...],
                                            follows: bool) -> None:
    """Elementwise ops and a LayerNorm over axes ≥ 2 keep the conv's channels changeable; a
    normalisation over the channels, per-channel constants (PRelu, Mean) fix them."""
    rng = np.random.default_rng(0)
    g = graph_with_input((1, 3, 4, 4))
    a = add_conv(g, "x", 6, 3, pad=1, rng=rng, name="a")
    names = []
    for i, shape in enumerate(consts):
        g.set_initializer(f"k{i}", rng.uniform(0.5, 1.5, shape).astype(np.float32))
        names.append(f"k{i}")
    g.tensors["r"] = TensorInfo("r", (1, 6, 4, 4))
    g.add_node(Node("r", op, (a, *names), ("r",), attrs))
    g.outputs.append(add_conv(g, "r", 2, 1, rng=rng, name="b"))
    groups = analyze(g)
    assert bool(groups.group_fixed[groups.group_names.index("a.y")]) is not follows, groups.group_names
