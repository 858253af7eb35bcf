"""What a classifier run measures and reports: running loss and top-k scores, the ranking of epochs,
model size/compute statistics, the confusion matrix, ``summary.json`` and the ONNX export of the float
model."""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch
from sklearn.metrics import confusion_matrix
from tabulate import tabulate

from ..metrics import model_params_stats
from ..quantization.export.onnx_qdq import export_to_onnx, import_onnx_package
from ..summaries.compute import model_macs

__all__ = ["RunningScores", "best_scores", "weight_statistics", "model_statistics", "confusion_table",
           "quantization_summary", "write_summary", "export_onnx"]

msglogger = logging.getLogger(__name__)


class RunningScores:
    """Accumulates loss and top-1/top-5 accuracy over batches (synchronising the device only when read)."""

    def __init__(self) -> None:
        self.samples = 0
        self.loss_sum: Union[float, torch.Tensor] = 0.0
        self.top1_hits: Union[int, torch.Tensor] = 0
        self.topk_hits: Union[int, torch.Tensor] = 0

    def update(self, output: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> None:
        """Adds one batch: the model's ``output`` logits, the ``target`` labels and the batch's mean ``loss``."""
        with torch.no_grad():
            hits = output.topk(min(5, output.size(1)), dim=1).indices.eq(target.unsqueeze(1))
            self.top1_hits += hits[:, 0].sum()
            self.topk_hits += hits.any(dim=1).sum()
            self.loss_sum += loss.detach() * target.size(0)
        self.samples += target.size(0)

    def values(self) -> dict[str, float]:
        """``{'Loss', 'Top1', 'Top5'}`` (accuracies in percent; Top5 is top-k with k = min(5, classes))."""
        n = max(self.samples, 1)
        return {"Loss": float(self.loss_sum) / n, "Top1": 100.0 * float(self.top1_hits) / n,
                "Top5": 100.0 * float(self.topk_hits) / n}


def _rank_key(score: dict[str, Any]) -> tuple[Any, ...]:
    """Distiller's ranking of epochs: the sparsest model first, then top-1, top-5, and the later epoch."""
    return (-score["params_nonzero"], score["top1"], score["top5"], score["epoch"])


def best_scores(score_history: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` best entries of ``score_history`` (dicts with epoch, top1, top5, sparsity, params_nonzero)."""
    return sorted(score_history, key=_rank_key, reverse=True)[:n]


def weight_statistics(model: torch.nn.Module) -> dict[str, Any]:
    """``{'sparsity', 'params_nonzero', 'params_total'}`` over the conv and linear weights of ``model``
    (2D/4D tensors, see :func:`distiller.metrics.model_params_stats`); sparsity in percent."""
    sparsity, total, nonzero = model_params_stats(model, param_types=("weight",))
    return {"sparsity": sparsity, "params_nonzero": int(nonzero), "params_total": int(total)}


def model_statistics(model: torch.nn.Module, dummy_input: torch.Tensor) -> dict[str, Any]:
    """:func:`weight_statistics` plus ``macs``: the dense-equivalent multiply-accumulates of one forward
    pass of ``dummy_input`` (a thinned model has fewer, a masked one does not)."""
    return {**weight_statistics(model), "macs": int(model_macs(model, dummy_input))}


def confusion_table(targets: Sequence[int], predictions: Sequence[int], num_classes: int) -> str:
    """The confusion matrix (rows: true class, columns: predicted class) as a text table."""
    matrix = confusion_matrix(targets, predictions, labels=list(range(num_classes)))
    rows = [[f"true {label}", *counts] for label, counts in enumerate(matrix.tolist())]
    return tabulate(rows, headers=["", *(f"pred {label}" for label in range(num_classes))], tablefmt="psql")


def quantization_summary(results: dict[str, Any]) -> dict[str, Any]:
    """The ``quantized`` entry of ``summary.json`` from :func:`distiller.cli.quantization.quantize_and_evaluate`'s
    results: the simulated model's ``top1``, ``top5``, ``loss`` (named as the float model's are), the
    ``checkpoint`` path, and the integer models' scores and their agreement when they were evaluated."""
    scores = results["quantized"]
    entry = {"top1": scores["Top1"], "top5": scores["Top5"], "loss": scores["Loss"],
             "checkpoint": results["checkpoint"]}
    entry.update((key, value) for key, value in results.items() if key not in ("quantized", "checkpoint"))
    return entry


def _quantized_scores(summary: dict[str, Any]) -> str:
    """The result line's words on the quantized model(s) of ``--quantize-eval``, or nothing: the test top-1 is the
    loaded model's (float, or quantization-aware-trained), so the quantized top-1 is named beside it."""
    quantized = summary.get("quantized")
    if not quantized:
        return ""
    deployed = [f"{label} {quantized[key]['Top1']:.2f}%" for key, label in (("pytorch_int8", "compiled int8"),
                                                                          ("onnxruntime", "ONNX Runtime"))
                if key in quantized]
    loaded = f"as trained with {quantized['trained_with']}" if quantized.get("trained_with") else "float model"
    return f" ({loaded}); quantized top-1 {quantized['top1']:.2f}%" + "".join(f", {d}" for d in deployed)


def _work_done(summary: dict[str, Any]) -> str:
    """What the run did, for the result line: the epochs it trained, or the evaluation of a trained model."""
    trained = summary.get("epochs_run", summary["epochs"])
    if trained == 0:
        return f"evaluation of a model trained {summary['epochs']} epochs, in {summary['wall_seconds']:.0f} s"
    return f"{trained} epochs in {summary['wall_seconds']:.0f} s"


def write_summary(run_dir: str, summary: dict[str, Any]) -> str:
    """Writes ``summary`` (plain data) to ``<run_dir>/summary.json``; returns the path."""
    path = os.path.join(run_dir, "summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)
    msglogger.info("Result: test top-1 %.2f%% top-5 %.2f%%%s | weight sparsity %.2f%% (%d of %d weights non-zero) | "
                   "%.1fM MACs | %s", summary["top1"], summary["top5"], _quantized_scores(summary),
                   summary["sparsity"], summary["params_nonzero"], summary["params_total"], summary["macs"] / 1e6,
                   _work_done(summary))
    msglogger.info("Summary: %s", path)
    return path


def export_onnx(model: torch.nn.Module, dummy_input: torch.Tensor, path: str) -> float:
    """Exports ``model`` (float, eval mode) to ONNX with a dynamic batch dimension and checks the file.

    Uses PyTorch's current exporter (``dynamo=True``, see
    :func:`distiller.quantization.export.onnx_qdq.export_to_onnx`). The file must pass
    :func:`onnx.checker.check_model`, and ONNX Runtime's output on ``dummy_input`` must match PyTorch's.

    Returns:
        the largest absolute difference between ONNX Runtime's and PyTorch's outputs.
    Raises:
        MissingDependencyError: ``onnxscript`` or ``onnxruntime`` is not installed.
        RuntimeError: ONNX Runtime's output differs from PyTorch's (a bug of the export).
    """
    import onnx

    onnxruntime = import_onnx_package("onnxruntime", "--export-onnx")
    network = model.module if isinstance(model, torch.nn.DataParallel) else model
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            expected = network(dummy_input).cpu().numpy()
        export_to_onnx(network, dummy_input, path, output_name="logits")
    finally:
        network.train(was_training)
    onnx.checker.check_model(onnx.load(path))
    msglogger.info("Exported the model to ONNX: %s (passes the ONNX checker)", path)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    actual = session.run(None, {"input": dummy_input.cpu().numpy()})[0]
    difference = float(np.max(np.abs(actual - expected)))
    if difference > 1e-3 * max(1.0, float(np.max(np.abs(expected)))):
        raise RuntimeError(f"ONNX Runtime's output differs from PyTorch's by {difference:.3g}: the export of "
                           f"{type(network).__name__} is wrong")
    msglogger.info("ONNX Runtime reproduces PyTorch's output (max abs difference %.2e)", difference)
    return difference
