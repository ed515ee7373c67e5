"""A build's CIM layers as NeuroSim's ``NetWork.csv`` (DNN_NeuroSim V1.4 / V2.1), so the same
network can be run through NeuroSim.

NeuroSim reads one row per layer, eight integers, no header: ``IFM height, IFM width, IFM
channels, kernel height, kernel width, OFM channels, pooling, stride`` (``netStructure[i][0..7]``
of its ``main.cpp``; ``[6]`` "followed by pooling or not", ``[7]`` "the strides of
convolutional kernel"); a fully connected layer is a 1×1 kernel on a 1×1 IFM whose channels are
its inputs (its VGG8 file ends ``1,1,8192,1,1,1024,0,1`` and ``1,1,1024,1,1,10,0,1``).

From ``layout.json``, per CIM layer in execution order, with ``geometry.in_shape = [N, C, H, W]``:

* IFM ``H, W``: the unpadded input (``in_shape[2:]``); a fully connected layer ``1, 1`` when it
  has one pixel per sample (``P`` pixels: ``P, 1``);
* IFM channels: ``C / groups`` — NeuroSim has no groups; each output channel of a grouped conv
  sees ``C / groups`` inputs, so its weight matrix (``kh·kw·C/groups`` rows, ``Cout`` columns)
  is the one NeuroSim then maps;
* kernel ``kh, kw`` and OFM channels ``Cout``;
* pooling ``1`` when the next CIM layer reads fewer values per sample (``C·H·W`` of its input)
  than this layer writes (``Cout·OH·OW``): a pooling, or another reduction, lies between them
  (the last layer: ``0``);
* stride ``stride_h`` (NeuroSim takes one stride; cimc refuses nothing here, a layer with
  ``stride_h ≠ stride_w`` is written with ``stride_h``).

Only CIM layers are listed: layers cimc runs digitally (fully connected ones without
``--map-fc``) are not on the macros and not in the file.
"""

from __future__ import annotations

from cimc.build.reader import BuildDir
from cimc.documents.layout import Layer

#: NeuroSim's columns, in order (the file itself has no header).
COLUMNS = ("ifm_height", "ifm_width", "ifm_channels", "kernel_height", "kernel_width", "ofm_channels", "pooling",
           "stride")


def _values_in(layer: Layer) -> int:
    _, c, h, w = layer.geometry.in_shape
    return c * h * w


def _values_out(layer: Layer) -> int:
    _, k, oh, ow = layer.geometry.out_shape
    return k * oh * ow


def network_rows(build: BuildDir) -> list[tuple[int, ...]]:
    """One NeuroSim row per CIM layer of ``build`` (module doc)."""
    layers = sorted(build.layout.layers, key=lambda x: x.index)
    rows: list[tuple[int, ...]] = []
    for i, layer in enumerate(layers):
        g = layer.geometry
        _, c, h, w = g.in_shape
        pooled = i + 1 < len(layers) and _values_in(layers[i + 1]) < _values_out(layer)
        rows.append((h, w, c // g.group, layer.kernel[0], layer.kernel[1], layer.cout, int(pooled), g.strides[0]))
    return rows


def network_csv(build: BuildDir) -> str:
    """``NetWork.csv``: the rows of ``network_rows``, comma-separated, one per line."""
    return "".join(",".join(str(v) for v in row) + "\n" for row in network_rows(build))
