"""The module a training loop calls: the model in ``DistributedDataParallel``, compiled, under autocast with
channels-last inputs, as the run asks, and rebuilt whenever the model's parameters change.

Compression changes the model under the training loop: masks are multiplied into the weights in place (a
compiled graph reads the parameters as inputs, so it sees them), but thinning replaces parameters by smaller
ones, which a ``DistributedDataParallel`` wrapper (its gradient buckets) and a compiled graph (its shapes)
must not outlive. :class:`TrainingModule` notices the change and builds both again, recompiling for the new
shapes; the optimizer holds the model's own parameters, whose state thinning slices, so it needs nothing.
"""
from __future__ import annotations

import logging
from typing import Any, Optional, cast

import torch
from torch import nn
from torch.utils._pytree import tree_map_only

__all__ = ["TrainingModule", "AutocastForward", "AMP_DTYPES"]

msglogger = logging.getLogger(__name__)

#: ``--amp`` value -> autocast dtype.
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class AutocastForward(nn.Module):
    """Runs ``inner`` under ``torch.autocast`` (when ``dtype`` is given) on channels-last inputs (when
    ``channels_last``), and returns float32 outputs, so the loss is computed in full precision.

    Args:
        inner: the module to run.
        dtype: the autocast dtype (``torch.bfloat16`` or ``torch.float16``), or None for no autocast.
        channels_last: convert 4-D inputs to ``torch.channels_last``.
    """

    def __init__(self, inner: nn.Module, dtype: Optional[torch.dtype], channels_last: bool) -> None:
        super().__init__()
        self.inner, self.dtype, self.channels_last = inner, dtype, channels_last

    def forward(self, inputs: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(inputs.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            output = self.inner(inputs, *args, **kwargs)
        return tree_map_only(torch.Tensor, lambda t: t.float() if t.is_floating_point() else t, output)


class TrainingModule:
    """Builds, and rebuilds after structural changes, the module the training loop calls.

    Args:
        model: the (unwrapped) model; checkpoints, masks and thinning keep working on it.
        distributed: wrap it in ``DistributedDataParallel`` (a process group must be initialized).
        amp_dtype: the autocast dtype, or None.
        channels_last: keep the model's 4-D weights and the inputs in ``torch.channels_last`` format.
        compile: run ``torch.compile`` (with ``compile_backend``) over the (wrapped) model.
        compile_backend: the ``torch.compile`` backend (``'inductor'``; tests use ``'aot_eager'``).

    Example:
        >>> from distiller.testing import TinyCNN
        >>> training = TrainingModule(TinyCNN(), channels_last=True)
        >>> training().inner is training.model
        True
    """

    def __init__(self, model: nn.Module, *, distributed: bool = False, amp_dtype: Optional[torch.dtype] = None,
                 channels_last: bool = False, compile: bool = False, compile_backend: str = "inductor") -> None:
        self.model, self.distributed, self.amp_dtype = model, distributed, amp_dtype
        self.channels_last, self.compile, self.compile_backend = channels_last, compile, compile_backend
        self._module: Optional[nn.Module] = None
        self._signature: tuple[Any, ...] = ()
        #: How many times the module was built (1 + the structural changes seen).
        self.builds = 0

    def _parameters_signature(self) -> tuple[Any, ...]:
        return tuple((name, tuple(p.shape), p.data_ptr()) for name, p in self.model.named_parameters())

    def __call__(self) -> nn.Module:
        """The module to train with, built again when the model's parameters were replaced or reshaped."""
        if self._module is None or self._parameters_signature() != self._signature:
            self._module = self._build()
            self._signature = self._parameters_signature()
        return self._module

    def _build(self) -> nn.Module:
        module = self.model
        if self.channels_last:
            module.to(memory_format=torch.channels_last)  # thinned weights come back in the default layout
        if self.distributed:
            device = next(module.parameters()).device
            module = nn.parallel.DistributedDataParallel(module, device_ids=[device.index]
                                                         if device.type == "cuda" else None)
        if self.compile:
            module = cast(nn.Module, torch.compile(module, backend=self.compile_backend))
        if self.amp_dtype is not None or self.channels_last:
            module = AutocastForward(module, self.amp_dtype, self.channels_last)
        self.builds += 1
        if self.builds > 1:
            msglogger.info("The model's parameters changed (thinning): rebuilt the training module%s",
                           " (recompiling)" if self.compile else "")
        return module
