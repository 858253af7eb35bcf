"""Range-linear wrappers of element-wise sums and products and of concatenation.

Sums and concatenations rescale every (integer) input to the output scale and round once, which is
what integer kernels do (e.g. PyTorch's quantized ``add`` and ``cat``); products multiply the integers
and requantize the product like a convolution's accumulator.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ... import modules as dm
from ..q_utils import linear_dequantize
from .wrappers import RangeLinearQuantWrapper

__all__ = ["RangeLinearQuantEltwiseAddWrapper", "RangeLinearQuantEltwiseMultWrapper",
           "RangeLinearQuantConcatWrapper"]


class _MultiInputWrapper(RangeLinearQuantWrapper):
    """Takes any number of inputs (as many as the statistics describe, or given by ``num_inputs``)."""

    def dequantized_inputs(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each input quantized with its parameters, as the real values its integers stand for."""
        return [linear_dequantize(*self.quantize_input(i, x)) for i, x in enumerate(inputs)]

    def _check_arity(self, inputs: Sequence[torch.Tensor]) -> None:
        if self.preset_act_stats and len(inputs) != len(self.input_scales):
            raise RuntimeError(f"{type(self).__name__} was calibrated for {len(self.input_scales)} inputs but got "
                               f"{len(inputs)}")


class RangeLinearQuantEltwiseAddWrapper(_MultiInputWrapper):
    """Quantized ``distiller.modules.EltwiseAdd``."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        self._check_arity(inputs)
        total = self.dequantized_inputs(inputs)
        result = total[0]
        for value in total[1:]:
            result = result + value
        return self.dequantize_output(result, 1.0, inputs[0].dtype)


class RangeLinearQuantEltwiseMultWrapper(_MultiInputWrapper):
    """Quantized ``distiller.modules.EltwiseMult``: product of the integers, requantized."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        self._check_arity(inputs)
        acc, acc_scale = self._integers(0, inputs[0])
        for index, tensor in enumerate(inputs[1:], start=1):
            integers, scale = self._integers(index, tensor)
            acc, acc_scale = acc * integers, acc_scale * scale
        return self.dequantize_output(acc.clamp(*self.accum_qrange), acc_scale, inputs[0].dtype)


    def _integers(self, index: int, tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input ``index`` as ``q + zero_point`` (the integers the product multiplies) and its scale."""
        q, scale, zero_point = self.quantize_input(index, tensor)
        return q + zero_point, scale


class RangeLinearQuantConcatWrapper(_MultiInputWrapper):
    """Quantized ``distiller.modules.Concat``: every input requantized to the output range."""

    wrapped_module: dm.Concat

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            inputs = tuple(inputs[0])
        self._check_arity(inputs)
        joined = torch.cat(self.dequantized_inputs(inputs), dim=self.wrapped_module.dim)
        return self.dequantize_output(joined, 1.0, inputs[0].dtype)
