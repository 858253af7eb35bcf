"""The integers a deployed layer computes with: int8 weights with PyTorch-convention scales, and the bias on
the accumulator's grid, both exactly as the simulated (range-linear) layer uses them."""
from __future__ import annotations

from typing import Optional

import torch

from ..range_linear.param_wrappers import RangeLinearQuantParamLayerWrapper

__all__ = ["int8_weight", "accumulator_grid_bias"]


def int8_weight(wrapper: RangeLinearQuantParamLayerWrapper) -> tuple[torch.Tensor, torch.Tensor]:
    """The wrapper's weights as int8 integers and their per-output-channel float32 scales (PyTorch's
    convention ``w ~= q * scale``; a per-tensor scale is repeated for every channel)."""
    weight = wrapper.dequantized_weight().detach().double()
    distiller_scale = wrapper.w_scale.detach().double().reshape(-1)
    channels = weight.shape[0]
    if distiller_scale.numel() == 1:
        distiller_scale = distiller_scale.expand(channels)
    shape = (channels,) + (1,) * (weight.dim() - 1)
    integers = torch.round(weight * distiller_scale.reshape(shape)).clamp(-128, 127).to(torch.int8)
    return integers, (1.0 / distiller_scale).float().contiguous()


def accumulator_grid_bias(wrapper: RangeLinearQuantParamLayerWrapper) -> Optional[torch.Tensor]:
    """The bias the simulated layer adds: rounded to the accumulator's grid (``input scale * weight scale``)
    and clamped to its range, as a float tensor (kernels that add a float bias then add the same value); a
    weights-only quantized layer (float activations) adds its float bias."""
    layer = wrapper.wrapped_module
    if layer.bias is None:
        return None
    if wrapper.num_bits_acts is None:
        return layer.bias.detach().float()
    acc_scale = (wrapper.input_scales[0].double() * wrapper.w_scale.double().reshape(-1))
    q_bias = torch.round(layer.bias.detach().double() * acc_scale).clamp(*wrapper.accum_qrange)
    return (q_bias / acc_scale).float()
