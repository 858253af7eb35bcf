"""Post-training range-linear quantization wrappers: integer arithmetic simulated in floating point.

Each wrapper quantizes its inputs to integers ``q = round(scale * x) - zero_point`` (Distiller's
convention, see :mod:`distiller.quantization.q_utils`), computes with the integers (convolutions and
matrix products accumulate ``q + zero_point`` exactly, at the product of the input scales), requantizes
the result to the output range and returns the dequantized value, so the surrounding float model runs
unchanged (Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018).

Ranges are *static* (from calibration statistics, the ``activation_stats`` of the module as collected by
:func:`distiller.data_loggers.collect_quant_stats`) or *dynamic* (from each batch). Static parameters
live in buffers (``input_scales``, ``input_zero_points``, ``output_scale``, ``output_zero_point``), so
a quantized checkpoint holds them and :mod:`distiller.quantization.export` reuses them unchanged.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Optional, Union

import torch
from torch import nn

from ...errors import ArgumentError
from ...spec import BitWidth, NonNegativeInt, validated
from ..overrides import BitsSetting
from ..q_utils import (ClipMode, ClipModeArg, LinearQuantMode, PositiveReal, QuantModeArg, aciq_clip_multiplier,
                       approx_scale_as_mult_and_shift, get_tensor_aciq_min_max, get_tensor_avg_min_max,
                       get_tensor_mean_n_stds_min_max, get_tensor_min_max, linear_dequantize,
                       linear_quant_params_from_min_max, linear_quantize_clamp, parse_clip_mode,
                       quantized_range_for_mode, verify_quant_mode)
from .input_overrides import InputOverrides, InputQuantSettings, check_input_overrides, input_quant_settings

__all__ = ["RangeLinearQuantWrapper", "RangeLinearFakeQuantWrapper", "FP16Wrapper", "saturation_range_from_stats",
           "UNSET", "InputOverrides", "InputQuantSettings", "FPWrapper"]

#: Marks a static input scale that the quantizer must still fill in (from the producing layer).
UNSET = float("nan")

#: Calibration statistics of one tensor (``min``, ``max``, ``avg_min``, ``avg_max``, ``mean``, ``std``, ``b``).
TensorStats = Mapping[str, float]
#: Calibration statistics of one module: ``{'inputs': {index: TensorStats}, 'output': TensorStats}``.
ModuleStats = Mapping[str, Any]
_Number = Union[float, torch.Tensor]


def saturation_range_from_stats(stats: TensorStats, clip_mode: ClipModeArg, num_bits: int,
                                clip_n_stds: Optional[float] = None,
                                clip_half_range: bool = False) -> tuple[float, float]:
    """The (min, max) range to quantize a tensor to, from its calibration statistics.

    Args:
        stats: a statistics record (``min``, ``max``, ``avg_min``, ``avg_max``, ``mean``, ``std``, ``b``).
        clip_mode: NONE (actual range), AVG (averaged per-sample extremes), N_STD (mean -/+ n stds),
            GAUSS / LAPLACE (ACIQ: mean -/+ the MSE-optimal multiple of std / b, Banner et al. 2019).
        clip_half_range: clip only the upper end; the lower end stays the actual minimum (for tensors
            with a one-sided distribution, e.g. after ReLU).
    Returns:
        (float, float), never beyond the actual min/max.
    """
    clip_mode = parse_clip_mode(clip_mode)
    lo, hi = stats["min"], stats["max"]
    if clip_mode == ClipMode.AVG:
        lo, hi = stats["avg_min"], stats["avg_max"]
    elif clip_mode == ClipMode.N_STD:
        if clip_n_stds is None:
            raise ArgumentError("clip_acts N_STD needs clip_n_stds (the number of standard deviations)",
                                argument="clip_n_stds")
        lo, hi = stats["mean"] - clip_n_stds * stats["std"], stats["mean"] + clip_n_stds * stats["std"]
    elif clip_mode in (ClipMode.GAUSS, ClipMode.LAPLACE):
        spread = stats["std"] if clip_mode == ClipMode.GAUSS else stats.get("b")
        if spread is None:
            raise ArgumentError("LAPLACE clipping needs the 'b' statistic; re-collect stats with collect_quant_stats")
        alpha = aciq_clip_multiplier(clip_mode, num_bits) * spread
        lo, hi = stats["mean"] - alpha, stats["mean"] + alpha
    lo, hi = max(lo, stats["min"]), min(hi, stats["max"])
    if clip_half_range:
        lo = stats["min"]
    return float(lo), float(hi)


def _dynamic_range(tensor: torch.Tensor, clip_mode: ClipMode, num_bits: int, clip_n_stds: Optional[float],
                   clip_half_range: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) tensors for quantizing ``tensor`` with a range measured on the tensor itself."""
    if clip_mode == ClipMode.AVG:
        lo, hi = get_tensor_avg_min_max(tensor, across_dim=0 if tensor.dim() > 1 else None)
    elif clip_mode == ClipMode.N_STD:
        assert clip_n_stds is not None  # the wrapper refuses N_STD without it
        lo, hi = get_tensor_mean_n_stds_min_max(tensor, n_stds=clip_n_stds)
    elif clip_mode in (ClipMode.GAUSS, ClipMode.LAPLACE):
        lo, hi = get_tensor_aciq_min_max(tensor, clip_mode, num_bits)
    else:
        lo, hi = get_tensor_min_max(tensor)
    if clip_half_range:
        lo = tensor.min()
    return lo, hi


def _inference_only(module: nn.Module, inputs: Any) -> None:
    if module.training and torch.is_grad_enabled():
        raise RuntimeError(f"{type(module).__name__}: post-training quantization is for inference (integer "
                           f"arithmetic has no gradients); call model.eval() or torch.no_grad(), or train with "
                           f"QuantAwareTrainRangeLinearQuantizer")


class RangeLinearQuantWrapper(nn.Module):
    """Base of the range-linear wrappers: input quantization and output requantization.

    Args:
        wrapped_module: the float module.
        num_bits_acts: bits of inputs and output (None only for weight-only parameter layers).
        num_bits_accum: bits of the integer accumulator (results are clamped to its signed range).
        mode: LinearQuantMode (or its name), or ``{'activations': m, 'weights': m}``.
        clip_acts: ClipMode (or its name) choosing the activation ranges.
        activation_stats: ``{'inputs': {i: stats}, 'output': stats}`` of this module; None = dynamic.
        clip_n_stds: standard deviations for ClipMode.N_STD.
        clip_half_range: see :func:`saturation_range_from_stats`.
        scale_approx_mult_bits: approximate the requantization factor by an integer multiplier of this
            many bits and a shift (None: exact float factor).
        num_inputs: how many tensor inputs the module takes (default: as many as the stats describe).
        input_overrides: settings of individual inputs (see :data:`InputOverrides`): ``from_output`` uses the
            output's settings without half-range clipping; otherwise the given bits, mode, clip mode and
            standard deviations replace the output's (see :mod:`.input_overrides`). The integer exporters
            refuse inputs with other bits or mode than the activations.
        inputs_quant_auto_fallback: quantize an input without ``input_overrides`` with the output's settings
            (True, the default here), or leave it to the quantizer, which gives it its producer's parameters
            (False, Distiller's wrapper default: with dynamic ranges every input then needs an override).
    Raises:
        ArgumentError: an override names an unknown setting or a bad value, or dynamic ranges without
            fallback leave an input without settings.
    """

    # Static quantization parameters (buffers, registered with activation statistics).
    input_scales: torch.Tensor
    input_zero_points: torch.Tensor
    output_scale: torch.Tensor
    output_zero_point: torch.Tensor

    @validated
    def __init__(self, wrapped_module: nn.Module, num_bits_acts: BitsSetting, num_bits_accum: BitWidth = 32,
                 mode: QuantModeArg = LinearQuantMode.SYMMETRIC, clip_acts: ClipModeArg = ClipMode.NONE,
                 activation_stats: Optional[ModuleStats] = None, clip_n_stds: Optional[PositiveReal] = None,
                 clip_half_range: bool = False, scale_approx_mult_bits: BitsSetting = None,
                 num_inputs: Optional[NonNegativeInt] = None, input_overrides: Optional[InputOverrides] = None,
                 inputs_quant_auto_fallback: bool = True) -> None:
        super().__init__()
        self.wrapped_module = wrapped_module
        self.num_bits_acts = num_bits_acts
        self.num_bits_accum = num_bits_accum
        self.mode = verify_quant_mode(mode)
        self.clip_acts = parse_clip_mode(clip_acts)
        self.clip_n_stds = clip_n_stds
        self.clip_half_range = clip_half_range
        self.scale_approx_mult_bits = scale_approx_mult_bits
        if self.clip_acts == ClipMode.N_STD and clip_n_stds is None:
            raise ArgumentError("clip_acts N_STD needs clip_n_stds (the number of standard deviations)",
                                argument="clip_n_stds")
        self.acts_qrange = (quantized_range_for_mode(self.num_bits_acts, self.mode.activations)
                            if self.num_bits_acts is not None else None)
        accum_max = 2 ** (self.num_bits_accum - 1)
        self.accum_qrange = (-accum_max, accum_max - 1)
        self.inputs_quant_auto_fallback = inputs_quant_auto_fallback
        self.input_settings = (self._input_settings(input_overrides, num_inputs) if self.num_bits_acts is not None
                               else {})
        self.preset_act_stats = activation_stats is not None and self.num_bits_acts is not None
        if activation_stats is not None and self.preset_act_stats:
            self._init_static_params(activation_stats, num_inputs)
        elif self.num_bits_acts is not None and not inputs_quant_auto_fallback:
            unset = [i for i in range(num_inputs if num_inputs is not None else 1) if i not in self.input_settings]
            if unset:
                raise ArgumentError(f"{type(self).__name__}: with dynamic ranges input(s) {unset} get no producer's "
                                    f"parameters: give them input_overrides or set inputs_quant_auto_fallback",
                                    argument="input_overrides")
        self.register_forward_pre_hook(_inference_only)

    @property
    def acts_bits(self) -> int:
        """``num_bits_acts`` of a wrapper that quantizes its activations (every caller does)."""
        assert self.num_bits_acts is not None, f"{type(self).__name__} does not quantize activations"
        return self.num_bits_acts

    def _acts_range(self) -> tuple[int, int]:
        assert self.acts_qrange is not None, f"{type(self).__name__} does not quantize activations"
        return self.acts_qrange

    @property
    def output_settings(self) -> InputQuantSettings:
        """The output's quantization settings (and every input's by default)."""
        return InputQuantSettings(self.acts_bits, self.mode.activations, self.clip_acts, self.clip_n_stds,
                                  self.clip_half_range)

    def _input_settings(self, input_overrides: Optional[InputOverrides],
                        num_inputs: Optional[int]) -> dict[int, InputQuantSettings]:
        checked = check_input_overrides(type(self).__name__, "input_overrides", input_overrides or {})
        try:
            return input_quant_settings(self.output_settings, checked, num_inputs)
        except ArgumentError as err:
            raise ArgumentError(f"{type(self).__name__}: {err}", argument=err.argument, location=err.location) from None

    def input_bits(self, index: int) -> int:
        """Bits of input ``index``: its override's, else the activations' (the format its producer shares)."""
        return self.input_settings[index].num_bits if index in self.input_settings else self.acts_bits

    def input_settings_of(self, index: int) -> Optional[InputQuantSettings]:
        """How input ``index`` is quantized: its override, else the output's settings (with fallback), else
        None (its parameters must come from its producer)."""
        if index in self.input_settings:
            return self.input_settings[index]
        return self.output_settings if self.inputs_quant_auto_fallback else None

    # -------------------------------------------------------------------------------- static ranges
    def _params_from_stats(self, stats: TensorStats, settings: Optional[InputQuantSettings] = None
                           ) -> tuple[float, float]:
        settings = settings or self.output_settings
        lo, hi = saturation_range_from_stats(stats, settings.clip_acts, settings.num_bits, settings.clip_n_stds,
                                             settings.clip_half_range)
        scale, zero_point = linear_quant_params_from_min_max(settings.num_bits, settings.mode,
                                                             torch.tensor(lo), torch.tensor(hi))
        return float(scale), float(zero_point)

    def _init_static_params(self, stats: ModuleStats, num_inputs: Optional[int]) -> None:
        inputs = {int(i): s for i, s in (stats.get("inputs") or {}).items()}
        count = num_inputs if num_inputs is not None else (max(inputs) + 1 if inputs else 1)
        settings = [self.input_settings_of(i) for i in range(count)]
        params = [self._params_from_stats(inputs[i], settings[i]) if i in inputs and settings[i] is not None
                  else (UNSET, UNSET) for i in range(count)]
        self.register_buffer("input_scales", torch.tensor([p[0] for p in params]))
        self.register_buffer("input_zero_points", torch.tensor([p[1] for p in params]))
        if self.has_output_stats:
            out = self._params_from_stats(stats["output"]) if stats.get("output") else (UNSET, UNSET)
            self.register_buffer("output_scale", torch.tensor(out[0]))
            self.register_buffer("output_zero_point", torch.tensor(out[1]))

    #: Whether the output has its own range (False for wrappers whose output uses the input's range).
    has_output_stats = True
    #: Whether the output integers get a ReLU (see :meth:`fuse_relu`).
    relu_fused = False

    def fuse_relu(self) -> None:
        """Applies the ReLU that follows the layer to its quantized output: integers below the one standing for 0
        (``-zero_point``) are raised to it, as integer kernels fuse a ReLU into requantization. The quantizer
        does so for ``make_identity`` (the ReLU module becomes an identity)."""
        self.relu_fused = True

    def _apply_fused_relu(self, q: torch.Tensor, zero_point: _Number) -> torch.Tensor:
        if not self.relu_fused:
            return q
        return torch.maximum(q, torch.as_tensor(-zero_point, dtype=q.dtype, device=q.device))

    def quant_params_for_range(self, lo: float, hi: float) -> tuple[float, float]:
        """Distiller (scale, zero_point) of this wrapper's activation format for the real range [lo, hi]."""
        scale, zero_point = linear_quant_params_from_min_max(self.acts_bits, self.mode.activations,
                                                             torch.tensor(float(lo)), torch.tensor(float(hi)))
        return float(scale), float(zero_point)

    def set_input_quant_params(self, index: int, scale: _Number, zero_point: _Number) -> None:
        """Quantizes input ``index`` with the given (static) parameters, e.g. those of its producer."""
        self.input_scales[index] = float(scale)
        self.input_zero_points[index] = float(zero_point)

    def set_output_quant_params(self, scale: _Number, zero_point: _Number) -> None:
        """Quantizes the output with the given (static) parameters."""
        self.output_scale.fill_(float(scale))
        self.output_zero_point.fill_(float(zero_point))

    def missing_static_params(self) -> list[str]:
        """Names of static parameters still unset (inputs without statistics nor producer)."""
        if not self.preset_act_stats:
            return []
        missing = [f"input {i}" for i, s in enumerate(self.input_scales.tolist()) if math.isnan(s)]
        if self.has_output_stats and math.isnan(self.output_scale.item()):
            missing.append("output")
        return missing

    # -------------------------------------------------------------------------------------- helpers
    def input_quant_params(self, index: int, tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero_point) of input ``index``: static buffers, or measured on ``tensor``."""
        if self.preset_act_stats:
            return self.input_scales[index], self.input_zero_points[index]
        settings = self.input_settings_of(index)
        if settings is None:
            raise ArgumentError(f"{type(self).__name__}: input {index} has no quantization settings: give it "
                                f"input_overrides or set inputs_quant_auto_fallback", argument="input_overrides")
        return self._dynamic_params(tensor, settings)

    def _dynamic_params(self, tensor: torch.Tensor, settings: Optional[InputQuantSettings] = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        settings = settings or self.output_settings
        lo, hi = _dynamic_range(tensor.detach(), settings.clip_acts, settings.num_bits, settings.clip_n_stds,
                                settings.clip_half_range)
        return linear_quant_params_from_min_max(settings.num_bits, settings.mode, lo, hi)

    def quantize_input(self, index: int, tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (integers, scale, zero_point) of input ``index`` (integers as float values)."""
        scale, zero_point = self.input_quant_params(index, tensor)
        settings = self.input_settings.get(index)
        q = linear_quantize_clamp(tensor, scale, zero_point, *(settings.qrange if settings else self._acts_range()))
        return q, scale, zero_point

    def requantize_output(self, accumulator: torch.Tensor, accumulator_scale: _Number,
                          float_output: Optional[torch.Tensor] = None,
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Requantizes an integer ``accumulator`` at ``accumulator_scale`` to the output range.

        Returns:
            (integers, output scale, output zero point).
        """
        if self.preset_act_stats:
            scale, zero_point = self.output_scale, self.output_zero_point
        else:
            reference = float_output if float_output is not None else accumulator / accumulator_scale
            scale, zero_point = self._dynamic_params(reference)
        factor = scale / accumulator_scale
        if self.scale_approx_mult_bits is not None:
            factor = approx_scale_as_mult_and_shift(factor, self.scale_approx_mult_bits)
        q = linear_quantize_clamp(accumulator * factor, 1.0, zero_point, *self._acts_range())
        return self._apply_fused_relu(q, zero_point), scale, zero_point

    def dequantize_output(self, accumulator: torch.Tensor, accumulator_scale: _Number,
                          dtype: torch.dtype, float_output: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Requantizes ``accumulator`` (see :meth:`requantize_output`) and returns real values in ``dtype``."""
        q, scale, zero_point = self.requantize_output(accumulator, accumulator_scale, float_output)
        return linear_dequantize(q, scale, zero_point).to(dtype)

    def extra_repr(self) -> str:
        mode = (f"mode={self.mode.activations.name}" if self.mode.activations == self.mode.weights else
                f"mode_acts={self.mode.activations.name}, mode_wts={self.mode.weights.name}")
        return (f"{mode}, num_bits_acts={self.num_bits_acts}, num_bits_accum={self.num_bits_accum}, "
                f"clip_acts={self.clip_acts.name}, preset_activation_stats={self.preset_act_stats}, "
                f"scale_approx_mult_bits={self.scale_approx_mult_bits}"
                + (", relu_fused=True" if self.relu_fused else ""))


class RangeLinearFakeQuantWrapper(RangeLinearQuantWrapper):
    """Runs the wrapped module in float and quantizes its output (for layers without integer math:
    activations, pooling, normalisation, ...).

    Its inputs are used as they come (they come from quantized producers already), unless
    ``quantize_inputs``: then each floating-point input is quantized (and dequantized) first, with its own
    statistics and the output's settings, its ``input_overrides``, or the parameters the quantizer gives it
    (those of its quantized producer, which leave it unchanged). That is Distiller's ``quantize_inputs``, for
    a layer that reads the model's input or a float layer's output.

    After :meth:`use_input_grid` (average pooling whose input has the output's parameters, as integer
    kernels run it) the module runs on the input's integers and the result is rounded once, as an
    integer kernel does, instead of on float values whose rounding ties would fall either way.

    Args:
        num_inputs: with ``quantize_inputs``, how many inputs it takes (default: as many as the statistics
            describe).
        input_overrides: see :class:`RangeLinearQuantWrapper`; they need ``quantize_inputs``.
        quantize_inputs: quantize the inputs before running the module.
        Other arguments: see :class:`RangeLinearQuantWrapper`.
    """

    @validated
    def __init__(self, wrapped_module: nn.Module, num_bits_acts: BitsSetting, num_bits_accum: BitWidth = 32,
                 mode: QuantModeArg = LinearQuantMode.SYMMETRIC, clip_acts: ClipModeArg = ClipMode.NONE,
                 activation_stats: Optional[ModuleStats] = None, clip_n_stds: Optional[PositiveReal] = None,
                 clip_half_range: bool = False, scale_approx_mult_bits: BitsSetting = None,
                 num_inputs: Optional[NonNegativeInt] = None, input_overrides: Optional[InputOverrides] = None,
                 quantize_inputs: bool = False) -> None:
        if input_overrides and not quantize_inputs:
            raise ArgumentError(f"{type(self).__name__}: input_overrides need quantize_inputs=True (without it the "
                                f"inputs are used as they come)", argument="input_overrides")
        super().__init__(wrapped_module, num_bits_acts, num_bits_accum, mode, clip_acts, activation_stats,
                         clip_n_stds, clip_half_range, scale_approx_mult_bits,
                         num_inputs=num_inputs if quantize_inputs else 0, input_overrides=input_overrides)
        self.quantize_inputs = quantize_inputs
        self.on_input_grid = False

    def use_input_grid(self, scale: torch.Tensor, zero_point: torch.Tensor) -> None:
        """The input is quantized with ``(scale, zero_point)``; the output keeps them."""
        self.set_output_quant_params(scale, zero_point)
        self.on_input_grid = True

    def _quantized_inputs(self, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
        if self.preset_act_stats and len(inputs) > len(self.input_scales):
            raise RuntimeError(f"{type(self).__name__} was calibrated for {len(self.input_scales)} inputs but got "
                               f"{len(inputs)}")
        return tuple(linear_dequantize(*self.quantize_input(index, x))
                     if isinstance(x, torch.Tensor) and x.is_floating_point() else x
                     for index, x in enumerate(inputs))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.quantize_inputs:
            inputs = self._quantized_inputs(inputs)
        if self.on_input_grid:
            scale, zero_point = self.output_scale, self.output_zero_point
            integers = torch.round(inputs[0] * scale)  # q + zero_point, exactly
            q = linear_quantize_clamp(self.wrapped_module(integers), 1.0, zero_point, *self._acts_range())
            return linear_dequantize(self._apply_fused_relu(q, zero_point), scale, zero_point)
        output = self.wrapped_module(*inputs)
        if self.preset_act_stats:
            scale, zero_point = self.output_scale, self.output_zero_point
        else:
            scale, zero_point = self._dynamic_params(output)
        q = linear_quantize_clamp(output, scale, zero_point, *self._acts_range())
        return linear_dequantize(self._apply_fused_relu(q, zero_point), scale, zero_point)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", quantize_inputs=True" if self.quantize_inputs else "")


class FP16Wrapper(nn.Module):
    """Simulates half-precision storage: inputs, weights and outputs rounded to float16.

    Arithmetic stays in the input dtype (CPUs lack fast float16 kernels), so this measures the effect
    of float16 rounding, not its speed. ``fp16=True`` in :class:`PostTrainLinearQuantizer` uses it.
    """

    def __init__(self, wrapped_module: nn.Module) -> None:
        super().__init__()
        self.wrapped_module = wrapped_module
        with torch.no_grad():
            for param in wrapped_module.parameters(recurse=False):
                param.copy_(param.half().to(param.dtype))

    def forward(self, *inputs: Any) -> Any:
        rounded = [x.half().to(x.dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x
                   for x in inputs]
        output = self.wrapped_module(*rounded)
        return output.half().to(output.dtype) if isinstance(output, torch.Tensor) else output


class FPWrapper(nn.Module):
    """Runs the wrapped module in another floating-point precision (Distiller's ``fpq_module`` 32 or 64): its
    own parameters and its floating-point inputs in ``dtype``, its output back in the input's dtype.

    Args:
        wrapped_module: the module (its own parameters are converted to ``dtype``).
        dtype: ``torch.float32`` or ``torch.float64``.
    """

    def __init__(self, wrapped_module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self.wrapped_module = wrapped_module.to(dtype)

    def forward(self, *inputs: Any) -> Any:
        floats = [x for x in inputs if isinstance(x, torch.Tensor) and x.is_floating_point()]
        converted = [x.to(self.dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs]
        output = self.wrapped_module(*converted)
        if floats and isinstance(output, torch.Tensor) and output.is_floating_point():
            return output.to(floats[0].dtype)
        return output

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}"
