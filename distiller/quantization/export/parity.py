"""Agreement between a simulated quantized model and its deployed forms (compiled int8, ONNX Runtime)."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Optional, Union

import numpy as np
import tabulate
import torch
from torch import nn

from ...errors import ArgumentError
from ...utils import model_device
from .onnx_qdq import import_onnx_package

__all__ = ["parity_check", "format_parity", "OnnxRuntimeModule"]

#: Readable names of the forms in a parity result.
_FORMS = {"pytorch_int8": "compiled int8 (PyTorch)", "onnxruntime": "ONNX Runtime QDQ"}


def _inputs_of(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def _compare(reference: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor]) -> dict[str, float]:
    expected, got = torch.cat(list(reference)), torch.cat(list(outputs))
    return {"top1_agreement": (expected.argmax(1) == got.argmax(1)).float().mean().item(),
            "max_abs_diff": (expected - got).abs().max().item()}


def parity_check(sim_model: nn.Module, data: Iterable[Any], converted_model: Optional[nn.Module] = None,
                 onnx_path: Optional[Union[str, os.PathLike]] = None,
                 max_batches: Optional[int] = None) -> dict[str, Any]:
    """Runs the same batches through the simulated model and its deployed forms and compares outputs.

    Args:
        sim_model: the model prepared by :class:`PostTrainLinearQuantizer`.
        data: an iterable of batches: input tensors or ``(input, target, ...)`` tuples (a DataLoader).
        converted_model: the compiled int8 model of :func:`~.inductor.compile_int8` (runs on CPU).
        onnx_path: an ONNX file from :func:`export_onnx_qdq`, run with ONNX Runtime on CPU.
        max_batches: stop after this many batches.
    Returns:
        ``{'samples': n, 'pytorch_int8': {'top1_agreement': a, 'max_abs_diff': d}, 'onnxruntime': {...},
        'pytorch_int8_vs_onnxruntime': {...}}`` (entries only for the forms given; the last one compares the
        two deployed forms with each other); agreement is the fraction of samples whose arg-max output
        matches the reference's, the difference is the largest absolute output (logit) difference.
    Raises:
        ArgumentError: neither ``converted_model`` nor ``onnx_path`` given, or ``data`` yields no batch.
    """
    if converted_model is None and onnx_path is None:
        raise ArgumentError("parity_check needs converted_model and/or onnx_path to compare with")
    onnx_model = OnnxRuntimeModule(onnx_path) if onnx_path is not None else None
    device = model_device(sim_model)
    reference: list[torch.Tensor] = []
    converted: list[torch.Tensor] = []
    ort: list[torch.Tensor] = []
    was_training = sim_model.training
    sim_model.eval()
    with torch.no_grad():
        for index, batch in enumerate(data):
            if max_batches is not None and index >= max_batches:
                break
            x = _inputs_of(batch)
            reference.append(sim_model(x.to(device)).float().cpu())
            if converted_model is not None:
                converted.append(converted_model(x.cpu()).float())
            if onnx_model is not None:
                ort.append(onnx_model(x.cpu()).float())
    sim_model.train(was_training)
    if not reference:
        raise ArgumentError("parity_check: data yielded no batch")
    result: dict[str, Any] = {"samples": sum(len(r) for r in reference)}
    if converted:
        result["pytorch_int8"] = _compare(reference, converted)
    if ort:
        result["onnxruntime"] = _compare(reference, ort)
    if converted and ort:
        result["pytorch_int8_vs_onnxruntime"] = _compare(ort, converted)
    return result


def format_parity(result: dict[str, Any]) -> str:
    """A :func:`parity_check` result as a table: one row per comparison (agreement in %, max logit difference)."""
    rows = []
    for key, entry in result.items():
        if isinstance(entry, dict):
            model, _, reference = key.partition("_vs_")
            rows.append([_FORMS[model], _FORMS[reference] if reference else "simulated model",
                         f"{100 * entry['top1_agreement']:.2f}%", f"{entry['max_abs_diff']:.4g}"])
    return tabulate.tabulate(rows, headers=[f"model ({result['samples']} samples)", "compared with",
                                            "top-1 agreement", "max logit difference"], tablefmt="simple")


class OnnxRuntimeModule(torch.nn.Module):
    """An ONNX file run by ONNX Runtime on the CPU, usable like a model: ``forward(x)`` returns the first
    output as a tensor on ``x``'s device (for evaluating an exported model with the same loop).

    Raises:
        MissingDependencyError: ``onnxruntime`` is not installed (``pip install 'distiller[onnx]'``).
    """

    def __init__(self, path: Union[str, os.PathLike], threads: Optional[int] = None) -> None:
        super().__init__()
        onnxruntime = import_onnx_package("onnxruntime", "Running an ONNX model")
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.session.run(None, {self.input_name: x.detach().cpu().numpy()})[0]
        return torch.from_numpy(np.asarray(output)).to(x.device)
