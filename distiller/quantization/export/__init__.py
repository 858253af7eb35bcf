"""Deployment of post-training-quantized models: PT2E/inductor int8, PyTorch int8 kernels, ONNX QDQ, parity checks."""
from .onnx_qdq import build_qdq_model, export_onnx_qdq
from .parity import OnnxRuntimeModule, parity_check
from .pt2e import CompiledInt8Model, compile_int8, to_pt2e
from .pytorch_int8 import BACKENDS, convert_distiller_ptq_model_to_pytorch
from .walk import ExportError, QParams

__all__ = ["to_pt2e", "compile_int8", "CompiledInt8Model", "convert_distiller_ptq_model_to_pytorch", "export_onnx_qdq",
           "build_qdq_model", "parity_check", "OnnxRuntimeModule", "BACKENDS", "ExportError", "QParams"]
