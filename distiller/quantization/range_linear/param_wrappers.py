"""Range-linear wrappers of layers that multiply: convolutions, linear layers, matmuls, embeddings.

Weights are quantized once, when wrapping (the module's ``weight`` then holds the integers ``q``, and
``w_scale`` / ``w_zero_point`` buffers hold their parameters); the bias is quantized at the
accumulator's scale (``input scale * weight scale``) to ``num_bits_accum`` bits. Integer accumulation
is simulated exactly: in float32 when every partial sum fits its 24-bit mantissa, in float64 otherwise.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ArgumentError
from ...graph.cost import register_layer_wrapper
from ...spec import BitWidth, validated
from ..overrides import BitsSetting
from ..q_utils import (ClipMode, ClipModeArg, LinearQuantMode, LinearQuantModeArg, PositiveReal, QuantModeArg,
                       get_tensor_min_max, linear_dequantize, linear_quant_params_from_min_max,
                       linear_quant_params_from_tensor, linear_quantize_clamp, parse_linear_quant_mode,
                       quantized_range_for_mode)
from .wrappers import InputOverrides, ModuleStats, RangeLinearQuantWrapper

__all__ = ["RangeLinearQuantParamLayerWrapper", "RangeLinearQuantMatmulWrapper", "RangeLinearEmbeddingWrapper"]

_FLOAT32_EXACT = 2 ** 24
#: The layers :class:`RangeLinearQuantParamLayerWrapper` wraps.
_ParamLayer = Union[nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear]


def _accumulation_dtype(fan_in: int, bits_a: int, bits_b: int) -> torch.dtype:
    """float32 if any sum of ``fan_in`` products of such integers is exact in float32, else float64."""
    return torch.float32 if fan_in * 2 ** (bits_a + bits_b) < _FLOAT32_EXACT else torch.float64


def _quantize_weight_in_place(module: Union[_ParamLayer, nn.Embedding], num_bits: int, mode: LinearQuantMode,
                              per_channel: bool, save_fp_weights: bool, clip: ClipMode = ClipMode.NONE,
                              clip_n_stds: Optional[float] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Replaces ``module.weight`` by its integers (range clipped by ``clip``); returns (scale, zero_point)."""
    weight = module.weight.detach()
    if save_fp_weights:
        module.register_buffer("float_weight", weight.clone())
    scale, zero_point = linear_quant_params_from_tensor(weight, num_bits, mode, per_channel=per_channel, clip=clip,
                                                        num_stds=clip_n_stds)
    scale, zero_point = scale.to(weight.device), zero_point.to(weight.device)
    with torch.no_grad():
        module.weight.copy_(linear_quantize_clamp(weight, scale, zero_point, *quantized_range_for_mode(num_bits, mode)))
    module.weight.requires_grad_(False)
    return scale, zero_point


@register_layer_wrapper("wrapped_module")
class RangeLinearQuantParamLayerWrapper(RangeLinearQuantWrapper):
    """Quantized ``Conv1d/2d/3d`` or ``Linear``: integer weights, integer accumulation, requantized output.

    Args:
        wrapped_module: the float layer (its weight is replaced by integers).
        num_bits_acts: bits of input and output; None quantizes only the weights (float activations).
        num_bits_params: bits of the weights.
        per_channel_wts: one weight scale per output channel.
        input_overrides, inputs_quant_auto_fallback: see :class:`RangeLinearQuantWrapper`.
        save_fp_weights: keep the float weights in a ``float_weight`` buffer of the wrapped module.
        also_clip_weights: clip the weights' range with the activations' ``clip_acts`` (N_STD, GAUSS or LAPLACE,
            measured on the weights themselves) instead of using their full range.
        Other arguments: see :class:`RangeLinearQuantWrapper`.
    Raises:
        ArgumentError: ``also_clip_weights`` with ``clip_acts`` AVG (an average over batches; weights are one
            tensor).
    """

    wrapped_module: _ParamLayer
    w_scale: torch.Tensor
    w_zero_point: torch.Tensor

    @validated
    def __init__(self, wrapped_module: nn.Module, num_bits_acts: BitsSetting, num_bits_params: BitWidth,
                 num_bits_accum: BitWidth = 32, mode: QuantModeArg = LinearQuantMode.SYMMETRIC,
                 clip_acts: ClipModeArg = ClipMode.NONE, per_channel_wts: bool = False,
                 activation_stats: Optional[ModuleStats] = None, clip_n_stds: Optional[PositiveReal] = None,
                 clip_half_range: bool = False, scale_approx_mult_bits: BitsSetting = None,
                 input_overrides: Optional[InputOverrides] = None, inputs_quant_auto_fallback: bool = True,
                 save_fp_weights: bool = False, also_clip_weights: bool = False) -> None:
        if not isinstance(wrapped_module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            raise TypeError(f"{type(self).__name__} wraps Conv1d/2d/3d and Linear, not {type(wrapped_module).__name__}")
        super().__init__(wrapped_module, num_bits_acts, num_bits_accum, mode, clip_acts, activation_stats,
                         clip_n_stds, clip_half_range, scale_approx_mult_bits, num_inputs=1,
                         input_overrides=input_overrides, inputs_quant_auto_fallback=inputs_quant_auto_fallback)
        self.num_bits_params = num_bits_params
        self.per_channel_wts = per_channel_wts
        self.save_fp_weights = save_fp_weights
        self.also_clip_weights = also_clip_weights
        weights_clip = self.clip_acts if also_clip_weights else ClipMode.NONE
        if weights_clip == ClipMode.AVG:
            raise ArgumentError("also_clip_weights cannot clip weights with clip_acts AVG (an average over batches of "
                                "activations); use N_STD, GAUSS or LAPLACE", argument="also_clip_weights")
        scale, zero_point = _quantize_weight_in_place(wrapped_module, self.num_bits_params, self.mode.weights,
                                                      per_channel_wts, save_fp_weights, weights_clip,
                                                      self.clip_n_stds)
        self.register_buffer("w_scale", scale)
        self.register_buffer("w_zero_point", zero_point)
        fan_in = wrapped_module.weight[0].numel()
        input_bits = self.input_bits(0) if self.num_bits_acts is not None else 32
        self._acc_dtype = _accumulation_dtype(fan_in, input_bits, self.num_bits_params)

    def requantize_weights(self, range_multiplier: float = 1.0) -> None:
        """Re-quantizes the weights from ``float_weight`` with their range scaled by ``range_multiplier``
        (values outside are clipped). Needs ``save_fp_weights=True``."""
        float_weight = getattr(self.wrapped_module, "float_weight", None)
        if float_weight is None:
            raise RuntimeError("re-quantizing weights needs the float weights: quantize with save_fp_weights=True")
        lo, hi = get_tensor_min_max(float_weight, per_dim=0 if self.per_channel_wts else None)
        scale, zero_point = linear_quant_params_from_min_max(self.num_bits_params, self.mode.weights,
                                                             lo * range_multiplier, hi * range_multiplier)
        with torch.no_grad():
            self.w_scale.copy_(scale.reshape(self.w_scale.shape))
            self.w_zero_point.copy_(zero_point.reshape(self.w_zero_point.shape))
            self.wrapped_module.weight.copy_(linear_quantize_clamp(
                float_weight, self.w_scale, self.w_zero_point,
                *quantized_range_for_mode(self.num_bits_params, self.mode.weights)))

    def _per_output_channel(self, tensor: torch.Tensor) -> torch.Tensor:
        """Views a per-channel (or scalar) tensor so it broadcasts over the layer's output."""
        if tensor.numel() == 1:
            return tensor.reshape(())
        if isinstance(self.wrapped_module, nn.Linear):
            return tensor.reshape(-1)
        return tensor.reshape(-1, *([1] * (self.wrapped_module.weight.dim() - 2)))

    def _layer(self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        if isinstance(self.wrapped_module, nn.Linear):
            return F.linear(input, weight, bias)
        return self.wrapped_module._conv_forward(input, weight, bias)

    def integer_weight(self) -> torch.Tensor:
        """The weight integers plus their zero point (the values the accumulator multiplies)."""
        return self.wrapped_module.weight + self.w_zero_point

    def dequantized_weight(self) -> torch.Tensor:
        """The real values the weight integers stand for."""
        return linear_dequantize(self.wrapped_module.weight, self.w_scale, self.w_zero_point)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        bias = self.wrapped_module.bias
        if self.num_bits_acts is None:
            return self._layer(input, self.dequantized_weight().to(input.dtype), bias)
        q, in_scale, in_zero_point = self.quantize_input(0, input)
        acc_scale = (in_scale * self.w_scale.reshape(-1)).to(self._acc_dtype)  # per output channel, or (1,)
        acc = self._layer((q + in_zero_point).to(self._acc_dtype), self.integer_weight().to(self._acc_dtype), None)
        if bias is not None:
            q_bias = linear_quantize_clamp(bias.detach().to(self._acc_dtype), acc_scale, 0, *self.accum_qrange)
            acc = acc + self._per_output_channel(q_bias)
        acc = acc.clamp(*self.accum_qrange)
        return self.dequantize_output(acc, self._per_output_channel(acc_scale), input.dtype)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", num_bits_params={self.num_bits_params}, "
                f"per_channel_wts={self.per_channel_wts}")


class RangeLinearQuantMatmulWrapper(RangeLinearQuantWrapper):
    """Quantized ``distiller.modules.Matmul`` / ``BatchMatmul``: both operands are activations."""

    @validated
    def __init__(self, wrapped_module: nn.Module, num_bits_acts: BitWidth, num_bits_accum: BitWidth = 32,
                 mode: QuantModeArg = LinearQuantMode.SYMMETRIC, clip_acts: ClipModeArg = ClipMode.NONE,
                 activation_stats: Optional[ModuleStats] = None, clip_n_stds: Optional[PositiveReal] = None,
                 clip_half_range: bool = False, scale_approx_mult_bits: BitsSetting = None,
                 input_overrides: Optional[InputOverrides] = None) -> None:
        super().__init__(wrapped_module, num_bits_acts, num_bits_accum, mode, clip_acts, activation_stats,
                         clip_n_stds, clip_half_range, scale_approx_mult_bits, num_inputs=2,
                         input_overrides=input_overrides)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        qa, sa, za = self.quantize_input(0, a)
        qb, sb, zb = self.quantize_input(1, b)
        dtype = _accumulation_dtype(a.size(-1), self.input_bits(0), self.input_bits(1))
        acc = self.wrapped_module((qa + za).to(dtype), (qb + zb).to(dtype)).clamp(*self.accum_qrange)
        return self.dequantize_output(acc, (sa * sb).to(dtype), a.dtype)


class RangeLinearEmbeddingWrapper(nn.Module):
    """Quantized ``nn.Embedding``: integer table, output dequantized with the table's parameters.

    Args:
        wrapped_module: the embedding (its weight is replaced by integers).
        num_bits: bits of the table.
        mode: LinearQuantMode (or name) of the table.
        per_channel_wts: one scale per embedding row.
        save_fp_weights: keep the float table in a ``float_weight`` buffer.
    """

    w_scale: torch.Tensor
    w_zero_point: torch.Tensor

    @validated
    def __init__(self, wrapped_module: nn.Module, num_bits: BitWidth,
                 mode: LinearQuantModeArg = LinearQuantMode.SYMMETRIC, per_channel_wts: bool = False,
                 save_fp_weights: bool = False) -> None:
        super().__init__()
        if not isinstance(wrapped_module, nn.Embedding):
            raise TypeError(f"{type(self).__name__} wraps nn.Embedding, not {type(wrapped_module).__name__}")
        self.wrapped_module = wrapped_module
        self.num_bits = num_bits
        self.mode = parse_linear_quant_mode(mode)
        scale, zero_point = _quantize_weight_in_place(wrapped_module, self.num_bits, self.mode, per_channel_wts,
                                                      save_fp_weights)
        self.register_buffer("w_scale", scale)
        self.register_buffer("w_zero_point", zero_point)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        table = linear_dequantize(self.wrapped_module.weight, self.w_scale, self.w_zero_point)
        module = self.wrapped_module
        return F.embedding(input, table, module.padding_idx, module.max_norm, module.norm_type,
                           module.scale_grad_by_freq, module.sparse)

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, mode={self.mode.name}"
