"""Device and dtype of the tensors a quantizer adds to a model.

Replacement modules create their parameters and buffers with torch's defaults (CPU, the default dtype):
PACT's learned clipping value, the range buffers of fake quantization, the static scales of the
post-training wrappers, FP8 scales. :func:`place_added_tensors` moves each of them to the device and
dtype of the float module it belongs to, so preparing a model and then calling ``model.to(...)``
gives the same model as moving it first and preparing it afterwards.
"""
from collections.abc import Iterable
from typing import Optional

import torch
from torch import nn

__all__ = ["place_added_tensors"]

#: Dtypes a model computes in; other floating types (float8 storage) keep their dtype, as ``Module.to``
#: would not cast them either without losing what they are.
_COMPUTE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _own_tensors(module: nn.Module) -> Iterable[tuple[dict, str, torch.Tensor]]:
    for store in (module._parameters, module._buffers):
        for name, tensor in store.items():
            if tensor is not None:
                yield store, name, tensor


def place_added_tensors(model: nn.Module, existing: Iterable[torch.Tensor]) -> None:
    """Moves the parameters and buffers of ``model`` that are not in ``existing`` to the device and dtype
    of the module they belong to.

    The reference of a module is the first floating tensor of ``existing`` in the module or its
    descendants (a wrapper takes it from the layer it wraps); a module without one (e.g. the activation
    module replacing an ``nn.ReLU``) takes its parent's. Only compute dtypes are cast (float16, bfloat16,
    float32, float64): integer counters and float8 storage keep their dtype but follow the device.
    A moved parameter is a new ``nn.Parameter``: call this before giving the parameters to an optimizer
    (:meth:`Quantizer.prepare_model` updates the optimizer afterwards).

    Args:
        model: the prepared model.
        existing: its parameters and buffers from before the preparation (held here so that their ids
            stay unique while comparing).
    """
    existing = list(existing)
    known = {id(t) for t in existing}
    subtree_reference = {}

    def reference_below(module: nn.Module) -> Optional[torch.Tensor]:
        if id(module) not in subtree_reference:
            found = next((t for _, _, t in _own_tensors(module) if id(t) in known and t.dtype in _COMPUTE_DTYPES),
                         None)
            for child in module.children():
                if found is not None:
                    break
                found = reference_below(child)
            subtree_reference[id(module)] = found
        return subtree_reference[id(module)]

    def visit(module: nn.Module, inherited: Optional[torch.Tensor]) -> None:
        reference = reference_below(module)
        reference = inherited if reference is None else reference
        if reference is None:
            return
        for store, name, tensor in _own_tensors(module):
            if id(tensor) in known:
                continue
            dtype = reference.dtype if tensor.dtype in _COMPUTE_DTYPES else tensor.dtype
            if tensor.device != reference.device or tensor.dtype != dtype:
                with torch.no_grad():
                    moved = tensor.to(device=reference.device, dtype=dtype)
                store[name] = nn.Parameter(moved, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else moved
        for child in module.children():
            visit(child, reference)

    visit(model, None)
