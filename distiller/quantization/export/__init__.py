"""Deployment of post-training-quantized models: PT2E lowering compiled to int8 by inductor, ONNX QDQ,
parity checks (``convert_distiller_ptq_model_to_pytorch`` is Distiller's name for the compiled int8 model), and
FP8 / int8 weight-only Linear layers where they measure faster (:func:`accelerate_linears`)."""
from .fast_linear import (LINEAR_METHODS, LinearAcceleration, LinearMethod, MethodTrial, acceleration_table,
                          accelerate_linears, format_accelerations)
from .inductor import CompiledInt8Model, check_cpp_compiler, compile_int8
from .onnx_qdq import build_qdq_model, export_onnx_qdq
from .parity import OnnxRuntimeModule, format_parity, parity_check
from .pt2e import to_pt2e
from .pytorch_int8 import BACKENDS, convert_distiller_ptq_model_to_pytorch
from .walk import ExportError, QParams

__all__ = ["to_pt2e", "compile_int8", "CompiledInt8Model", "check_cpp_compiler",
           "convert_distiller_ptq_model_to_pytorch", "export_onnx_qdq", "build_qdq_model", "parity_check",
           "format_parity", "OnnxRuntimeModule", "BACKENDS", "ExportError", "QParams", "accelerate_linears",
           "LinearAcceleration", "MethodTrial", "LinearMethod", "LINEAR_METHODS", "acceleration_table",
           "format_accelerations"]
