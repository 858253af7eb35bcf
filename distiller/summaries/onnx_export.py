"""``export_img_classifier_to_onnx``: Distiller's ONNX export of an image classifier, with its class
probabilities as output."""
from __future__ import annotations

import logging
import os
from typing import Any

from torch import nn

from ..model_tools import get_dummy_input, make_non_parallel_copy
from ..quantization.export.onnx_qdq import export_to_onnx

msglogger = logging.getLogger(__name__)

__all__ = ["export_img_classifier_to_onnx"]


def export_img_classifier_to_onnx(model: nn.Module, onnx_fname: str, dataset: str, add_softmax: bool = True,
                                  **kwargs: Any) -> str:
    """Exports a float image classifier to the ONNX file ``onnx_fname`` (batch dimension dynamic).

    ``model`` is not changed: a copy without DataParallel wrappers, in eval mode, is exported with PyTorch's
    exporter (:func:`distiller.quantization.export.onnx_qdq.export_to_onnx`). For a post-training-quantized
    model use :func:`distiller.quantization.export_onnx_qdq`, which writes integer QDQ operators.

    Args:
        model: the classifier.
        onnx_fname: the output path.
        dataset: the dataset it classifies (``'cifar10'``, ``'digits'``, ``'mnist'``, ``'imagenet'``): gives the
            input shape.
        add_softmax: append a softmax, so the exported model outputs class probabilities (models output
            logits; the softmax is part of their training loss).
        **kwargs: passed to ``export_to_onnx`` (e.g. ``output_name``).
    Returns:
        ``onnx_fname``.
    Raises:
        distiller.errors.MissingDependencyError: ``onnxscript``, which the exporter needs, is not installed.
        distiller.errors.ArgumentError: an unknown dataset.
    """
    dummy_input = get_dummy_input(dataset)
    exported = make_non_parallel_copy(model).cpu()
    if add_softmax:
        exported = nn.Sequential(exported, nn.Softmax(dim=-1))
    export_to_onnx(exported.eval(), dummy_input, onnx_fname, **kwargs)
    msglogger.info("Exported the model to ONNX format at %s", os.path.realpath(onnx_fname))
    return onnx_fname
