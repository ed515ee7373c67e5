"""Quantization-aware training hook (torch): IR ⇄ ``nn.Module``, LSQ phase 1, ADC-aware phase 2.

    from cimc.train import module_from_graph, prepare_phase, fit, load_train_data, export_onnx

    module = module_from_graph(graph)                # parameters = the graph's initializers
    data = load_train_data("digits")
    prepare_phase(module, "1", data.calibration_batch())
    fit(module, data, "1", epochs=10, lr=1e-3)       # or your own trainer (same protocol)
    prepare_phase(module, "2", data.calibration_batch())
    fit(module, data, "2", epochs=10, lr=1e-2)
    export_onnx(module, "model.qat.onnx")            # folded weights + cimc.quant step sizes

Per-layer bits and bit-slicing: ``QuantConfig.for_macro(macro, w_bits=8, layer_bits={"conv1":
{"a_bits": 8}})`` — the macro gives the wordlines and the cell/DAC widths, every layer its own
``w_bits``/``a_bits``/``adc_bits``; a layer wider than a cell or the DAC is bit-sliced in
phase 2 (every segment × input slice × weight slice through the ADC, then the shift-add,
bit-exact with ``cimc.quant.reference``).

A short fine-tune of one bit configuration (for ``cimc search``)::

    from cimc.train import finetune
    graph_q, accuracy = finetune(graph, {"conv1": (8, 8, 5)}, macro, data, steps=200)

``finetune(graph, bits, macro, data, steps=200, options=None) -> (graph, accuracy)``: ``bits``
maps CIM layers to ``(w_bits, a_bits, adc_bits)`` (others take ``FinetuneOptions.default_bits``,
by default the macro's), ``data`` is a ``TrainData``; half the steps LSQ phase 1, half
phase 2; the graph carries ``cimc.quant`` for the compile pipeline, the accuracy is the
phase-2 (= compiled) test accuracy. ``finetune_run`` also returns the module and losses.

See ``cimc.train.trainer`` for the ``fit`` protocol and ``cimc.train.qat`` for the flow.
"""

# ruff: noqa: E402  (the extra is checked before torch is imported)
from cimc.extras import require

require("train", "training (cimc qat, cimc morph, fine-tuning, cimc sweep --train)")

from cimc.train.calibrate import prepare_phase
from cimc.train.config import LayerBits, QuantConfig
from cimc.train.datasets import TrainData, load_train_data
from cimc.train.export import export_graph, export_onnx, parse_quant_metadata
from cimc.train.finetune import FinetuneOptions, FinetuneResult, finetune, finetune_run
from cimc.train.module import IRModule, module_from_graph
from cimc.train.qat import QatOptions, QatResult, load_trainer, run_qat
from cimc.train.trainer import DEFAULT_LR, Trainer, evaluate, fit, train_steps

__all__ = ["DEFAULT_LR", "FinetuneOptions", "FinetuneResult", "IRModule", "LayerBits", "QatOptions", "QatResult",
           "QuantConfig", "TrainData", "Trainer", "evaluate", "export_graph", "export_onnx", "finetune",
           "finetune_run", "fit", "load_train_data", "load_trainer", "module_from_graph", "parse_quant_metadata",
           "prepare_phase", "run_qat", "train_steps"]
