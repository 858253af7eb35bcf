"""Range-based linear quantization-aware training (Jacob et al. 2018, https://arxiv.org/abs/1712.05877).

Weights are quantized for every forward pass from a full-precision copy (``float_weight``) with a range
taken from the weights themselves (per tensor or per output channel). Activations are fake-quantized after
each activation module (``nn.ReLU``, ``nn.ReLU6``) and, optionally, at the model input, with ranges tracked
by an exponential moving average of the observed min/max. Gradients pass straight through the rounding.
With ``fold_bn`` the BatchNorm layers that follow convolution/linear layers are folded into their weights
during training (:class:`~distiller.quantization.bn_fold.SimulatedFoldedBatchNorm`).
"""
from __future__ import annotations

from typing import Annotated, Any, Optional

import torch
import torch.nn as nn

from ...registry import register_quantizer
from ...spec import BitWidth, NonNegativeInt, Range, validated
from ..base import ParamToQuant, QBits, Quantizer
from ..bn_fold import fold_batchnorm_pairs
from ..overrides import BitsSetting, Overrides
from ..q_utils import (LinearQuantMode, LinearQuantizeSTE, QuantModeArg, clamp_to_quantized_range,
                       get_tensor_min_max, linear_quant_params_from_min_max, linear_quant_params_from_tensor,
                       verify_quant_mode)

__all__ = ["FakeLinearQuantization", "FakeQuantizationWrapper", "QuantAwareTrainRangeLinearQuantizer",
           "ACTIVATION_TYPES"]

#: Activation modules after which activations are fake-quantized.
ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6)
#: Decay of an exponential moving average, strictly between 0 and 1.
EmaDecay = Annotated[float, Range(0, 1, lo_open=True, hi_open=True)]


class FakeLinearQuantization(nn.Module):
    """Fake-quantizes a tensor with a range tracked by an exponential moving average of its min/max.

    The averages are bias-corrected (as in Adam) so the first batches are not pulled towards 0. In eval
    mode the tracked range is used as is; a module that has never seen a training batch quantizes with
    the range of the current batch.

    Args:
        num_bits: bit width.
        mode: a :class:`~distiller.quantization.LinearQuantMode` (or its name / CLI alias), or
            ``{'activations': mode, 'weights': mode}`` (the activations' mode is used).
        ema_decay: decay of the moving averages, in (0, 1).
        dequantize: return real values (fake quantization) instead of integers.
    """

    # The moving averages (biased and bias-corrected), the quantization parameters and the step count (buffers).
    tracked_min_biased: torch.Tensor
    tracked_max_biased: torch.Tensor
    tracked_min: torch.Tensor
    tracked_max: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    iter_count: torch.Tensor

    @validated
    def __init__(self, num_bits: BitWidth = 8, mode: QuantModeArg = LinearQuantMode.SYMMETRIC,
                 ema_decay: EmaDecay = 0.999, dequantize: bool = True) -> None:
        super().__init__()
        self.num_bits = num_bits
        self.mode = verify_quant_mode(mode).activations
        self.ema_decay, self.dequantize = ema_decay, dequantize
        for name in ("tracked_min_biased", "tracked_max_biased", "tracked_min", "tracked_max", "zero_point"):
            self.register_buffer(name, torch.zeros(1))
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("iter_count", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _update_range(self, input: torch.Tensor) -> None:
        current_min, current_max = get_tensor_min_max(input)
        self.iter_count += 1
        correction = 1 - self.ema_decay ** self.iter_count.float()
        for biased, unbiased, current in ((self.tracked_min_biased, self.tracked_min, current_min),
                                          (self.tracked_max_biased, self.tracked_max, current_max)):
            biased.mul_(self.ema_decay).add_((1 - self.ema_decay) * current)
            unbiased.copy_(biased / correction)
        scale, zero_point = linear_quant_params_from_min_max(self.num_bits, self.mode, self.tracked_min,
                                                             self.tracked_max)
        self.scale.copy_(scale)
        self.zero_point.copy_(zero_point)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._update_range(input)
            scale, zero_point = self.scale, self.zero_point
        elif self.iter_count.item() == 0:
            scale, zero_point = linear_quant_params_from_min_max(self.num_bits, self.mode, *get_tensor_min_max(input))
        else:
            scale, zero_point = self.scale, self.zero_point
        input = clamp_to_quantized_range(input, scale, zero_point, self.num_bits, self.mode)
        return LinearQuantizeSTE.apply(input, scale, zero_point, self.dequantize, False)

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, mode={self.mode.name}, ema_decay={self.ema_decay}"


class FakeQuantizationWrapper(nn.Module):
    """Runs ``wrapped_module`` and fake-quantizes its output with :class:`FakeLinearQuantization`."""

    def __init__(self, wrapped_module: nn.Module, num_bits: int, quant_mode: QuantModeArg, ema_decay: float) -> None:
        super().__init__()
        self.wrapped_module = wrapped_module
        self.fake_q = FakeLinearQuantization(num_bits, quant_mode, ema_decay, dequantize=True)

    def forward(self, *input: Any) -> torch.Tensor:
        return self.fake_q(self.wrapped_module(*input))


def _quantize_model_inputs(model: nn.Module, args: tuple[Any, ...]) -> Optional[tuple[Any, ...]]:
    """Forward pre-hook: fake-quantizes the model's first positional input with ``model.inputs_quant``."""
    if not args:
        return None
    return (model.get_submodule("inputs_quant")(args[0]),) + tuple(args[1:])


@register_quantizer
class QuantAwareTrainRangeLinearQuantizer(Quantizer):
    """Range-linear quantization-aware training.

    Args:
        model, optimizer, bits_activations, bits_weights, bits_bias, overrides: see
            :class:`~distiller.quantization.Quantizer` (``train_with_fp_copy`` is always on).
        mode: LinearQuantMode (or name / 'sym', 'sym_restr', 'asym_s', 'asym_u'), or
            ``{'activations': mode, 'weights': mode}``.
        ema_decay: decay of the activation range moving averages, in (0, 1).
        per_channel_wts: one weight range per output channel (not for ``nn.Embedding``).
        quantize_inputs: also fake-quantize the model's input.
        num_bits_inputs: bit width of the input (default: ``bits_activations``).
        fold_bn: fold BatchNorm layers into the preceding conv/linear weights during training (needs a
            model that ``torch.fx`` can trace).
        freeze_bn_delay: with ``fold_bn``, training steps after which BN statistics are frozen.

    Memory: every quantized weight is held twice, as the trained full-precision Parameter ``float_weight`` and
    as the ``weight`` buffer of the same dtype and shape holding its fake-quantized values (+1x the quantized
    weights' bytes, plus the optimizer state of the float copy as without quantization).
    :func:`distiller.masking.mask_memory_report` reports it as ``quantized_buffer_bytes``. There is no
    cheaper variant here: the buffer is what the forward pass, checkpoints, thinning and export read.
    Pruning masks on the float copies cost 1 byte per element (bool) or 1/8 byte packed.

    YAML::

        linear_quantizer:
          class: QuantAwareTrainRangeLinearQuantizer
          bits_activations: 8
          bits_weights: 4
          bits_bias: 32
          mode: ASYMMETRIC_UNSIGNED
          ema_decay: 0.999
          per_channel_wts: true
          overrides:
            conv1: {bits_weights: null, bits_activations: null}
            fc: {bits_weights: null}
    """

    @validated
    def __init__(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
                 bits_activations: BitsSetting = 32, bits_weights: BitsSetting = 32, bits_bias: BitsSetting = 32,
                 overrides: Optional[Overrides] = None, mode: QuantModeArg = LinearQuantMode.SYMMETRIC,
                 ema_decay: EmaDecay = 0.999, per_channel_wts: bool = False, quantize_inputs: bool = True,
                 num_bits_inputs: BitsSetting = None, fold_bn: bool = False,
                 freeze_bn_delay: NonNegativeInt = 200000) -> None:
        super().__init__(model, optimizer=optimizer, bits_activations=bits_activations, bits_weights=bits_weights,
                         bits_bias=bits_bias, overrides=overrides, train_with_fp_copy=True)
        self.mode = verify_quant_mode(mode)
        self.ema_decay, self.per_channel_wts = ema_decay, per_channel_wts
        self.quantize_inputs, self.fold_bn, self.freeze_bn_delay = quantize_inputs, fold_bn, freeze_bn_delay
        self.num_bits_inputs = bits_activations if num_bits_inputs is None else num_bits_inputs
        self.param_quantization_fn = self._quantize_param
        for activation_type in ACTIVATION_TYPES:
            self.replacement_factory[activation_type] = self._wrap_activation

    def _wrap_activation(self, module: nn.Module, name: str,
                         qbits_map: dict[str, QBits]) -> Optional[FakeQuantizationWrapper]:
        bits = qbits_map[name].acts
        return None if bits is None else FakeQuantizationWrapper(module, bits, self.mode.activations, self.ema_decay)

    def _weight_quant_params(self, param_fp: torch.Tensor,
                             param_meta: ParamToQuant) -> tuple[torch.Tensor, torch.Tensor]:
        # Embedding rows feed later layers as activations, which are quantized per tensor.
        per_channel = (self.per_channel_wts and param_fp.dim() > 1
                       and not isinstance(param_meta.module, nn.Embedding))
        return linear_quant_params_from_tensor(param_fp.detach(), param_meta.num_bits, self.mode.weights,
                                               per_channel=per_channel)

    def _quantize_param(self, param_fp: torch.Tensor, param_meta: ParamToQuant) -> torch.Tensor:
        """Quantizes with the parameter's own range; records scale/zero point in ``<name>_scale`` buffers."""
        with torch.no_grad():
            scale, zero_point = self._weight_quant_params(param_fp, param_meta)
            buffers = param_meta.module._buffers
            if param_meta.q_attr_name + "_scale" in buffers:
                buffers[param_meta.q_attr_name + "_scale"] = scale
                buffers[param_meta.q_attr_name + "_zero_point"] = zero_point
        # The range is the weights' own, so a symmetric maximum would round to 2^(b-1) (one past the integer
        # range); clamp it back by at most half a step, with the gradient passed through so it keeps training.
        clamped = clamp_to_quantized_range(param_fp.detach(), scale, zero_point, param_meta.num_bits,
                                           self.mode.weights)
        return LinearQuantizeSTE.apply(param_fp + (clamped - param_fp.detach()), scale, zero_point, True, False)

    def _pre_prepare_model(self, dummy_input: Any) -> Optional[set[str]]:
        if not self.fold_bn:
            return None
        assert self.param_quantization_fn is not None  # set by __init__ (a subclass may replace it)
        return fold_batchnorm_pairs(self.model, self.module_qbits_map, self.param_quantization_fn,
                                    self.freeze_bn_delay)

    def _post_prepare_model(self) -> None:
        for ptq in self.params_to_quantize:
            scale, zero_point = self._weight_quant_params(getattr(ptq.module, ptq.fp_attr_name), ptq)
            ptq.module.register_buffer(ptq.q_attr_name + "_scale", scale)
            ptq.module.register_buffer(ptq.q_attr_name + "_zero_point", zero_point)
        if self.quantize_inputs and self.num_bits_inputs is not None:
            model = self._model_key()
            model.inputs_quant = FakeLinearQuantization(self.num_bits_inputs, self.mode.activations, self.ema_decay)
            model.register_forward_pre_hook(_quantize_model_inputs)
