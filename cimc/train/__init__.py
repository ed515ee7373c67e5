"""Quantization-aware training hook (torch): IR ⇄ ``nn.Module``, LSQ phase 1, ADC-aware phase 2.

    from cimc.train import module_from_graph, prepare_phase, fit, load_train_data, export_onnx

    module = module_from_graph(graph)                # parameters = the graph's initializers
    data = load_train_data("digits")
    prepare_phase(module, "1", data.calibration_batch())
    fit(module, data, "1", epochs=10, lr=1e-3)       # or your own trainer (same protocol)
    prepare_phase(module, "2", data.calibration_batch())
    fit(module, data, "2", epochs=10, lr=1e-2)
    export_onnx(module, "model.qat.onnx")            # folded weights + cimc.quant step sizes

See ``cimc.train.trainer`` for the ``fit`` protocol and ``cimc.train.qat`` for the flow.
"""

from cimc.train.calibrate import prepare_phase
from cimc.train.datasets import TrainData, load_train_data
from cimc.train.export import export_graph, export_onnx, parse_quant_metadata
from cimc.train.layer import QuantConfig
from cimc.train.module import IRModule, module_from_graph
from cimc.train.qat import QatOptions, QatResult, load_trainer, run_qat
from cimc.train.trainer import DEFAULT_LR, Trainer, evaluate, fit

__all__ = ["DEFAULT_LR", "IRModule", "QatOptions", "QatResult", "QuantConfig", "TrainData", "Trainer",
           "evaluate", "export_graph", "export_onnx", "fit", "load_train_data", "load_trainer",
           "module_from_graph", "parse_quant_metadata", "prepare_phase", "run_qat"]
