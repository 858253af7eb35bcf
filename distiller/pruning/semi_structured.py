"""Export of 2:4-sparse Linear layers to PyTorch's semi-structured sparse tensors (sparse tensor cores).

A Linear weight pruned 2:4 (:class:`~distiller.pruning.NMStructurePruner` with ``n: 2, m: 4``) multiplies
faster on Ampere and later GPUs once stored as ``torch.sparse.to_sparse_semi_structured`` (values plus 2-bit
metadata; Mishra et al. 2021, arXiv:2104.08378), but only for large enough matrices: for small ones the
sparse kernel loses to the dense GEMM. :func:`to_semi_structured` therefore times every eligible layer on the
input it really receives, dense against sparse (interleaved medians), and converts only where sparse wins.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Optional, Union

import pandas as pd
import torch
from torch import nn

from ..benchmark import interleaved_latencies_ms
from ..errors import ArgumentError
from ..graph.capture import record_first_inputs
from ..utils import model_device
from .nm import is_nm_sparse

__all__ = ["SemiStructuredLayer", "semi_structured_ineligibility", "to_semi_structured", "SPARSE_DTYPES",
           "MIN_SHAPE_MULTIPLE"]

#: Weight dtypes a float Linear can be converted in.
SPARSE_DTYPES = (torch.float16, torch.bfloat16)
#: (rows, columns) a converted weight's shape must be a multiple of: the stricter of torch's two backends
#: (CUTLASS needs (32, 64) for fp16/bf16, cuSPARSELt (16, 16)), so the check holds whichever torch picks.
MIN_SHAPE_MULTIPLE = (32, 64)


@dataclass(frozen=True)
class SemiStructuredLayer:
    """One Linear layer's outcome in :func:`to_semi_structured`.

    Attributes:
        name: the module's name.
        converted: whether its weight is now semi-structured sparse.
        reason: why it was skipped, or ``'faster'``.
        dense_ms, sparse_ms: median latency of the layer on its recorded input (None when not timed).
    """

    name: str
    converted: bool
    reason: str
    dense_ms: Optional[float] = None
    sparse_ms: Optional[float] = None

    @property
    def speedup(self) -> Optional[float]:
        """Dense over sparse latency (None when not timed)."""
        return None if self.dense_ms is None or self.sparse_ms is None else self.dense_ms / self.sparse_ms


def semi_structured_ineligibility(module: nn.Module) -> Optional[str]:
    """Why ``module`` cannot become semi-structured sparse, or None when it can (timing aside)."""
    if not isinstance(module, nn.Linear):
        return f"a {type(module).__name__}, not a Linear"
    weight = module.weight
    if isinstance(weight, torch.sparse.SparseSemiStructuredTensor):
        return "already semi-structured sparse"
    if weight.dtype not in SPARSE_DTYPES:
        return f"weight dtype {weight.dtype}: cast the model to torch.float16 or torch.bfloat16 first"
    rows, cols = MIN_SHAPE_MULTIPLE
    if weight.shape[0] % rows or weight.shape[1] % cols:
        return f"weight shape {tuple(weight.shape)} is not a multiple of {MIN_SHAPE_MULTIPLE}"
    if not is_nm_sparse(weight, 2, 4):
        return "weight is not 2:4 sparse: prune it with NMStructurePruner (n: 2, m: 4) first"
    return None


def to_semi_structured(model: nn.Module, example_inputs: Union[torch.Tensor, Sequence[Any]], *,
                       min_speedup: float = 1.0, warmup: int = 5, repeats: int = 20) -> pd.DataFrame:
    """Converts the 2:4-sparse Linear layers of ``model`` whose sparse multiply is faster, in place.

    Each Linear's input is recorded from one forward pass on ``example_inputs``; every eligible layer
    (:func:`semi_structured_ineligibility`) is then timed on it dense and sparse, interleaved, and converted
    when ``dense / sparse >= min_speedup``. Converted weights no longer train (``requires_grad=False``).

    Args:
        model: a model on a CUDA GPU with compute capability 8.0 or newer, in float16 or bfloat16.
        example_inputs: a tensor or tuple of positional inputs, at the batch size the model will serve.
        min_speedup: the speedup a layer must reach to be converted.
        warmup, repeats: untimed and timed calls per layer and variant.
    Returns:
        one row per Linear layer: the fields of :class:`SemiStructuredLayer` and ``speedup``.
    Raises:
        ArgumentError: the model is not on a CUDA GPU with sparse tensor cores.
    """
    _check_device(model_device(model))
    inputs = record_first_inputs(model, example_inputs,
                                 [name for name, module in model.named_modules() if isinstance(module, nn.Linear)])
    report = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            report.append(_convert_if_faster(name, module, inputs.get(name), min_speedup, warmup, repeats))
    return pd.DataFrame([{**asdict(layer), "speedup": layer.speedup} for layer in report])


def _check_device(device: torch.device) -> None:
    if device.type != "cuda":
        raise ArgumentError(f"to_semi_structured needs the model on a CUDA GPU (semi-structured sparse kernels "
                            f"exist only there), but it is on {device}: move it with model.to('cuda', "
                            "torch.float16) on a GPU machine")
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        raise ArgumentError(f"to_semi_structured needs sparse tensor cores (compute capability 8.0, Ampere, or "
                            f"newer); {torch.cuda.get_device_name(device)} has {major}.{minor}")


def _convert_if_faster(name: str, module: nn.Linear, x: Optional[torch.Tensor], min_speedup: float, warmup: int,
                       repeats: int) -> SemiStructuredLayer:
    reason = semi_structured_ineligibility(module)
    if reason is not None:
        return SemiStructuredLayer(name, False, reason)
    if x is None:
        return SemiStructuredLayer(name, False, "not called on the example inputs")
    dense = module.weight.detach()
    try:
        sparse = torch.sparse.to_sparse_semi_structured(dense)
        with torch.no_grad():
            times = interleaved_latencies_ms({"dense": lambda: nn.functional.linear(x, dense, module.bias),
                                              "sparse": lambda: nn.functional.linear(x, sparse, module.bias)},
                                             x.device, warmup, repeats)
    except RuntimeError as err:    # a shape or backend torch's kernels refuse: reported, not fatal
        return SemiStructuredLayer(name, False, f"torch refused: {str(err).splitlines()[0]}")
    dense_ms, sparse_ms = statistics.median(times["dense"]), statistics.median(times["sparse"])
    if dense_ms / sparse_ms < min_speedup:
        return SemiStructuredLayer(name, False, f"speedup {dense_ms / sparse_ms:.2f}x is below min_speedup "
                                                f"{min_speedup}x", dense_ms, sparse_ms)
    module.weight = nn.Parameter(sparse, requires_grad=False)
    return SemiStructuredLayer(name, True, "faster", dense_ms, sparse_ms)
