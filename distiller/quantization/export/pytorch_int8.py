"""Distiller's ``convert_distiller_ptq_model_to_pytorch``, kept as a compatibility entry point.

It used to build ``torch.ao.nn.quantized`` modules on quantized tensors, an API torch 2.14 deprecates
("will be removed in a future PyTorch release"); it now routes to :func:`~.inductor.compile_int8`, the
PT2E lowering compiled by inductor, which computes the same integers with the x86 int8 kernels.
"""
from __future__ import annotations

import typing
import warnings
from typing import Any, Literal

from torch import nn

from ...spec import validated
from .inductor import CompiledInt8Model, compile_int8
from .walk import ExportError

__all__ = ["convert_distiller_ptq_model_to_pytorch", "Backend", "BACKENDS", "X86_BACKENDS"]

#: Distiller's quantized engines: ``x86``, ``fbgemm`` and ``onednn`` are x86 engines, ``qnnpack`` the ARM one.
Backend = Literal["x86", "fbgemm", "qnnpack", "onednn"]
BACKENDS: tuple[str, ...] = typing.get_args(Backend)
#: The engines the inductor lowering serves (it compiles for the x86 CPU it runs on).
X86_BACKENDS: tuple[str, ...] = ("x86", "fbgemm", "onednn")


@validated
def convert_distiller_ptq_model_to_pytorch(model: nn.Module, dummy_input: Any,
                                           backend: Backend = "x86") -> CompiledInt8Model:
    """Converts a model prepared by :class:`PostTrainLinearQuantizer` to int8 CPU kernels (deprecated name).

    A thin compatibility entry point: the result is :func:`~.inductor.compile_int8`'s compiled module, not
    a GraphModule of ``torch.ao.nn.quantized`` modules (the quantized-tensor API torch 2.14 deprecates); it
    is called the same way, ``int8_model(x)``.

    Args:
        model: the simulated quantized model (not modified).
        dummy_input: an example input (tensor or tuple); the model is compiled on it.
        backend: one of Distiller's quantized engines; the x86 ones ('x86', 'fbgemm', 'onednn') all compile
            for this machine's x86 CPU.
    Returns:
        a :class:`~.inductor.CompiledInt8Model`.
    Raises:
        ExportError: ``backend='qnnpack'`` (the ARM engine of the deprecated API has no replacement here), or
            as :func:`~.pt2e.to_pt2e`.
        distiller.errors.MissingDependencyError: no C++ compiler is available.
        distiller.errors.ArgumentError: an unknown backend (checked by :func:`distiller.spec.validated`).
    Example:
        >>> int8_model = convert_distiller_ptq_model_to_pytorch(quantized_model, torch.randn(1, 3, 32, 32))
    """
    warnings.warn("convert_distiller_ptq_model_to_pytorch is kept for compatibility and now returns "
                  "distiller.quantization.export.compile_int8's compiled module: call compile_int8 instead",
                  DeprecationWarning, stacklevel=3)
    if backend not in X86_BACKENDS:
        raise ExportError(f"convert_distiller_ptq_model_to_pytorch: backend {backend!r} ran on torch.ao's "
                          f"deprecated quantized modules and is no longer supported; the int8 lowering "
                          f"(compile_int8) compiles for x86 CPUs: use one of {', '.join(X86_BACKENDS)}")
    return compile_int8(model, dummy_input)
