"""ONNX frontend: loading, normalisation into the IR, and export back to ONNX."""

from cimc.frontend.loader import check_model, load_model
from cimc.frontend.onnx_export import export_onnx, save_onnx
from cimc.frontend.onnx_import import import_onnx

__all__ = ["check_model", "export_onnx", "import_onnx", "load_model", "save_onnx"]
