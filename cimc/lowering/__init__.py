"""Lowering to standard ONNX: ``model.cim.onnx``, exact CIM numerics in ONNX ops onnxruntime runs."""
