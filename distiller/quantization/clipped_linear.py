"""Quantization-aware training with clipped activations: DoReFa, PACT and WRPN.

All three replace each ``nn.ReLU`` that has an activation bit width with a module that clips its input to
``[0, clip_val]`` and fake-quantizes the result, and train with a full-precision copy of the weights
(``float_weight``) that is quantized for every forward pass. Gradients go straight through the rounding
(Bengio et al. 2013) and are zero where the clipping saturates.

Activations are only quantized where the model uses ``nn.ReLU`` modules; functional ``torch.relu`` calls
and additions are not seen (convert them to modules, e.g. with ``distiller.modules``). Asking for
activation bits on a model without any ReLU module is an error rather than silently float activations.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

import torch
import torch.nn as nn

from ..registry import register_quantizer
from ..spec import BitWidth, validated
from .base import ParamQuantizationFn, ParamToQuant, QBits, Quantizer
from .overrides import BitsSetting, Overrides
from .q_utils import (LinearQuantizeSTE, NonNegativeReal, PositiveReal, asymmetric_linear_quantization_params,
                      symmetric_linear_quantization_params)

__all__ = ["ClippedLinearQuantization", "LearnedClippedLinearQuantization", "clamp",
           "dorefa_quantize_param", "wrpn_quantize_param", "DorefaQuantizer", "PACTQuantizer", "WRPNQuantizer"]


def clamp(input: torch.Tensor, min: float, max: float, inplace: bool = False) -> torch.Tensor:
    """``input`` clamped to [min, max]; zero gradient outside the range."""
    if inplace:
        return input.clamp_(min, max)
    return torch.clamp(input, min, max)


class ClippedLinearQuantization(nn.Module):
    """Clips to [0, clip_val] and quantizes uniformly to ``num_bits`` (DoReFa / WRPN activations).

    Args:
        num_bits: activation bit width.
        clip_val: the fixed upper clipping value.
        dequantize: return real values (fake quantization) instead of integers.
        inplace: clip and quantize the input tensor in place.
    """

    @validated
    def __init__(self, num_bits: BitWidth, clip_val: PositiveReal, dequantize: bool = True,
                 inplace: bool = False) -> None:
        super().__init__()
        self.num_bits, self.clip_val = num_bits, clip_val
        self.scale, self.zero_point = asymmetric_linear_quantization_params(num_bits, 0.0, self.clip_val,
                                                                            signed=False)
        self.dequantize, self.inplace = dequantize, inplace

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        input = clamp(input, 0.0, self.clip_val, self.inplace)
        return LinearQuantizeSTE.apply(input, self.scale, self.zero_point, self.dequantize, self.inplace)

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, clip_val={self.clip_val}, dequantize={self.dequantize}"


class LearnedClippedLinearQuantization(nn.Module):
    """PACT activation (Choi et al. 2018): ``clip(x, 0, alpha)`` with a learned ``alpha`` (``clip_val``),
    quantized uniformly to ``num_bits``.

    The gradient with respect to ``clip_val`` is the incoming gradient where ``x >= alpha`` (the rounding
    is passed straight through), as in the paper's eq. 3.
    """

    @validated
    def __init__(self, num_bits: BitWidth, init_act_clip_val: PositiveReal, dequantize: bool = True,
                 inplace: bool = False) -> None:
        super().__init__()
        self.num_bits = num_bits
        self.clip_val = nn.Parameter(torch.tensor([init_act_clip_val]))
        self.dequantize, self.inplace = dequantize, inplace

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        input = torch.relu(input)
        input = torch.where(input < self.clip_val, input, self.clip_val)
        with torch.no_grad():
            clip = self.clip_val.abs().clamp(min=1e-8)
            scale, zero_point = asymmetric_linear_quantization_params(self.num_bits, torch.zeros_like(clip), clip,
                                                                      signed=False)
        return LinearQuantizeSTE.apply(input, scale, zero_point, self.dequantize, False)

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, clip_val={self.clip_val.item():.4f}, dequantize={self.dequantize}"


def _binarize(param_fp: torch.Tensor) -> torch.Tensor:
    """mean(|w|) * sign(w), with a straight-through gradient (DoReFa's 1-bit weights)."""
    binary = torch.where(param_fp >= 0, 1.0, -1.0) * param_fp.abs().mean()
    return binary.detach() + (param_fp - param_fp.detach())  # exact values forward, identity gradient


def dorefa_quantize_param(param_fp: torch.Tensor, param_meta: ParamToQuant) -> torch.Tensor:
    """DoReFa weights (Zhou et al. 2016, eq. 9): ``2 * quantize_k(tanh(w) / (2 max|tanh(w)|) + 0.5) - 1``.

    One bit gives ``mean(|w|) * sign(w)``. ``param_meta.num_bits`` is the bit width.
    """
    if param_meta.num_bits == 1:
        return _binarize(param_fp)
    scale, zero_point = asymmetric_linear_quantization_params(param_meta.num_bits, 0.0, 1.0, signed=False)
    out = torch.tanh(param_fp)
    out = out / (2 * out.abs().max().clamp(min=1e-12)) + 0.5
    out = LinearQuantizeSTE.apply(out, scale, zero_point, True, False)
    return 2 * out - 1


def wrpn_quantize_param(param_fp: torch.Tensor, param_meta: ParamToQuant) -> torch.Tensor:
    """WRPN weights (Mishra et al. 2017): clipped to [-1, 1], quantized symmetrically to ``num_bits``.

    The signed range keeps 2^(b-1)-1 levels on each side (one bit is the sign).
    """
    scale, zero_point = symmetric_linear_quantization_params(param_meta.num_bits, 1.0, restrict_qrange=True)
    out = clamp(param_fp, -1.0, 1.0)
    return LinearQuantizeSTE.apply(out, scale, zero_point, True, False)


class _ClippedReLUQuantizer(Quantizer):
    """Shared set-up: fp-copy training, ReLUs replaced by ``_make_activation(bits)``, no bias quantization
    (the subclasses' ``bits_bias`` is typed ``None``)."""

    def __init__(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer], bits_activations: BitsSetting,
                 bits_weights: BitsSetting, overrides: Optional[Overrides], param_fn: ParamQuantizationFn) -> None:
        super().__init__(model, optimizer=optimizer, bits_activations=bits_activations,
                         bits_weights=bits_weights, bits_bias=None, overrides=overrides, train_with_fp_copy=True)
        self.param_quantization_fn = param_fn
        self.replacement_factory[nn.ReLU] = self._replace_relu

    def _replace_relu(self, module: nn.Module, name: str, qbits_map: dict[str, QBits]) -> Optional[nn.Module]:
        bits = qbits_map[name].acts
        return None if bits is None else self._make_activation(bits)

    def _make_activation(self, num_bits: int) -> nn.Module:
        return ClippedLinearQuantization(num_bits, 1.0, dequantize=True, inplace=False)


@register_quantizer
class DorefaQuantizer(_ClippedReLUQuantizer):
    """DoReFa-Net quantization-aware training (Zhou et al. 2016, https://arxiv.org/abs/1606.06160).

    Weights: :func:`dorefa_quantize_param`; activations: ReLUs become :class:`ClippedLinearQuantization`
    to [0, 1]. Gradients are not quantized.

    YAML::

        dorefa_quantizer:
          class: DorefaQuantizer
          bits_activations: 8
          bits_weights: 4
          overrides:
            conv1: {bits_weights: null, bits_activations: null}
            fc: {bits_weights: null}

    Scheduled for the whole training::

        policies:
          - quantizer:
              instance_name: dorefa_quantizer
            starting_epoch: 0
            ending_epoch: 200
            frequency: 1
    """

    #: The 2^b weight levels are symmetric around 0 with an even count (one bit: +-mean|w|): 0 is not one of them.
    keeps_zero_weights = False

    @validated
    def __init__(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer], bits_activations: BitsSetting = 32,
                 bits_weights: BitsSetting = 32, bits_bias: Literal[None] = None,
                 overrides: Optional[Overrides] = None) -> None:
        super().__init__(model, optimizer, bits_activations, bits_weights, overrides, dorefa_quantize_param)


@register_quantizer
class WRPNQuantizer(_ClippedReLUQuantizer):
    """WRPN quantization-aware training (Mishra et al. 2017, https://arxiv.org/abs/1709.01134).

    Weights: :func:`wrpn_quantize_param`; activations: ReLUs become :class:`ClippedLinearQuantization`
    to [0, 1]. WRPN's other half, widening the layers, is a model change you make yourself.

    YAML::

        wrpn_quantizer:
          class: WRPNQuantizer
          bits_activations: 4
          bits_weights: 4
          overrides:
            conv1: {bits_weights: null, bits_activations: null}
            fc: {bits_weights: null}
    """

    @validated
    def __init__(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer], bits_activations: BitsSetting = 32,
                 bits_weights: BitsSetting = 32, bits_bias: Literal[None] = None,
                 overrides: Optional[Overrides] = None) -> None:
        super().__init__(model, optimizer, bits_activations, bits_weights, overrides, wrpn_quantize_param)


@register_quantizer
class PACTQuantizer(_ClippedReLUQuantizer):
    """PACT quantization-aware training (Choi et al. 2018, https://arxiv.org/abs/1805.06085).

    ReLUs become :class:`LearnedClippedLinearQuantization` with a learned clipping value per layer,
    initialised to ``act_clip_init_val``; weights are quantized as in DoReFa. The clipping values get
    their own optimizer parameter group, with weight decay ``act_clip_decay`` (the paper's L2 on alpha)
    when given, else the optimizer's default.

    YAML::

        pact_quantizer:
          class: PACTQuantizer
          act_clip_init_val: 8.0
          act_clip_decay: 0.0002
          bits_activations: 8
          bits_weights: 4
          overrides:
            conv1: {bits_weights: null, bits_activations: null}
            fc: {bits_weights: null}
    """

    keeps_zero_weights = False  # DoReFa's weights (see DorefaQuantizer)

    @validated
    def __init__(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer], bits_activations: BitsSetting = 32,
                 bits_weights: BitsSetting = 32, bits_bias: Literal[None] = None, overrides: Optional[Overrides] = None,
                 act_clip_init_val: PositiveReal = 8.0, act_clip_decay: Optional[NonNegativeReal] = None) -> None:
        self.act_clip_init_val, self.act_clip_decay = act_clip_init_val, act_clip_decay
        super().__init__(model, optimizer, bits_activations, bits_weights, overrides, dorefa_quantize_param)

    def _make_activation(self, num_bits: int) -> nn.Module:
        return LearnedClippedLinearQuantization(num_bits, self.act_clip_init_val, dequantize=True, inplace=False)

    def _get_updated_optimizer_params_groups(self) -> list[dict[str, Any]]:
        clip_params = [m.clip_val for m in self.model.modules() if isinstance(m, LearnedClippedLinearQuantization)]
        clip_ids = {id(p) for p in clip_params}
        groups = [{**g, "params": [p for p in g["params"] if id(p) not in clip_ids]}
                  for g in super()._get_updated_optimizer_params_groups()]
        clip_group: dict[str, Any] = {"params": clip_params}
        if self.act_clip_decay is not None:
            clip_group["weight_decay"] = self.act_clip_decay
        return groups + [clip_group]
