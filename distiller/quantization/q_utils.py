"""Linear (uniform) quantization primitives shared by post-training and quantization-aware training.

Convention (Distiller's): a real value ``x`` maps to the integer ``q = round(scale * x) - zero_point``
and back to ``x' = (q + zero_point) / scale``. ``scale`` is therefore "integer steps per real unit"
(the reciprocal of PyTorch's ``scale``) and ``zero_point`` is the negated integer that real 0 maps to.

Per-channel variants reduce over every dimension except dim 0 and return tensors shaped
``(C, 1, ..., 1)`` so they broadcast against the quantized tensor.

References:
    Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
    Inference", CVPR 2018 (affine quantization, integer multiplier + shift).
    Banner et al., "Post-training 4-bit quantization of convolution networks for rapid-deployment"
    (ACIQ), NeurIPS 2019 (analytical clipping for Gaussian/Laplace tensors).
    Bengio et al., "Estimating or Propagating Gradients Through Stochastic Neurons", 2013 (STE).
"""
from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, NamedTuple, Optional, TypeVar, Union

import torch
from pydantic import PlainValidator

from ..errors import ArgumentError
from ..spec import BitWidth, NonNegativeReal, PositiveReal, Range, check_value

__all__ = ["LinearQuantMode", "ClipMode", "ModuleQuantMode", "parse_linear_quant_mode", "parse_clip_mode",
           "verify_quant_mode", "LinearQuantModeArg", "QuantModeArg", "ClipModeArg", "SymmetricBitWidth",
           "PositiveReal", "NonNegativeReal",
           "get_quantized_range", "quantized_range_for_mode",
           "symmetric_linear_quantization_params", "asymmetric_linear_quantization_params",
           "linear_quant_params_from_min_max", "linear_quant_params_from_tensor",
           "linear_quantize", "linear_quantize_clamp", "clamp_to_quantized_range", "linear_dequantize",
           "LinearQuantizeSTE",
           "get_tensor_min_max", "get_tensor_avg_min_max", "get_tensor_max_abs", "get_tensor_avg_max_abs",
           "get_tensor_mean_n_stds_min_max", "get_tensor_aciq_min_max", "aciq_clip_multiplier",
           "get_scale_approximation_params", "approx_scale_as_mult_and_shift"]


class LinearQuantMode(enum.Enum):
    """How the real range maps onto the integer range.

    SYMMETRIC: zero point 0, signed range [-2^(b-1), 2^(b-1)-1], scale from max |x|.
    SYMMETRIC_RESTRICTED: like SYMMETRIC but the range is [-(2^(b-1)-1), 2^(b-1)-1] (no -128 for 8 bits).
    ASYMMETRIC_UNSIGNED: [min, max] (extended to include 0) maps onto [0, 2^b-1].
    ASYMMETRIC_SIGNED: [min, max] maps onto [-2^(b-1), 2^(b-1)-1].
    """
    SYMMETRIC = 1
    ASYMMETRIC_UNSIGNED = 2
    ASYMMETRIC_SIGNED = 3
    SYMMETRIC_RESTRICTED = 4


class ClipMode(enum.Enum):
    """How the saturation range of a tensor is chosen from its statistics.

    NONE: actual min/max. AVG: average over batches (or samples) of the per-batch min/max.
    N_STD: mean +/- n standard deviations. GAUSS / LAPLACE: the MSE-optimal clipping value for a
    Gaussian / Laplace distributed tensor (Banner et al. 2019, ACIQ).
    """
    NONE = 0
    AVG = 1
    N_STD = 2
    GAUSS = 3
    LAPLACE = 4


class ModuleQuantMode(NamedTuple):
    """Quantization mode of a module's activations and weights."""
    activations: LinearQuantMode
    weights: LinearQuantMode


# Distiller's command-line spellings (--qe-mode sym / sym_restr / asym_s / asym_u).
_MODE_ALIASES = {"sym": LinearQuantMode.SYMMETRIC, "sym_restr": LinearQuantMode.SYMMETRIC_RESTRICTED,
                 "asym_s": LinearQuantMode.ASYMMETRIC_SIGNED, "asym_u": LinearQuantMode.ASYMMETRIC_UNSIGNED}


_E = TypeVar("_E", bound=enum.Enum)


def _parse_enum(enum_cls: type[_E], value: Any, aliases: Mapping[str, _E], what: str) -> _E:
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str):
        key = value.strip()
        if key.lower() in aliases:
            return aliases[key.lower()]
        if key.upper() in enum_cls.__members__:
            return enum_cls[key.upper()]
    valid = sorted(aliases) + list(enum_cls.__members__)
    raise ArgumentError(f"unknown {what} {value!r}; valid values: {', '.join(valid)}")


def parse_linear_quant_mode(value: Union[LinearQuantMode, str]) -> LinearQuantMode:
    """Returns the LinearQuantMode for an enum, its name (any case) or a CLI alias ('sym', 'asym_u', ...)."""
    return _parse_enum(LinearQuantMode, value, _MODE_ALIASES, "quantization mode")


def parse_clip_mode(value: Union[ClipMode, str]) -> ClipMode:
    """Returns the ClipMode for an enum or its name in any case ('avg', 'N_STD', 'laplace', ...)."""
    return _parse_enum(ClipMode, value, {}, "clip mode")


def verify_quant_mode(mode: Union[LinearQuantMode, str, ModuleQuantMode,
                                   Mapping[str, Union[LinearQuantMode, str]]]) -> ModuleQuantMode:
    """Normalises a mode given for both tensor types, or as ``{'activations': m, 'weights': m}``.

    Returns:
        ModuleQuantMode(activations, weights) of LinearQuantMode values.
    Raises:
        distiller.errors.ArgumentError: unknown mode strings or dict keys.
    """
    if isinstance(mode, ModuleQuantMode):
        return ModuleQuantMode(*(parse_linear_quant_mode(m) for m in mode))
    if isinstance(mode, Mapping):
        unknown = set(mode) - {"activations", "weights"}
        if unknown or len(mode) != 2:
            raise ArgumentError(f"a per-tensor quantization mode needs exactly the keys 'activations' and "
                                f"'weights', got {sorted(mode)}")
        return ModuleQuantMode(parse_linear_quant_mode(mode["activations"]),
                               parse_linear_quant_mode(mode["weights"]))
    mode = parse_linear_quant_mode(mode)
    return ModuleQuantMode(mode, mode)


#: Argument types (see :mod:`distiller.spec`): the parsers above are their validators, so a bad value is an
#: ``ArgumentError`` naming the argument and listing the valid names, from YAML and Python alike.
#: A LinearQuantMode, its name in any case, or a CLI alias ('sym', 'sym_restr', 'asym_s', 'asym_u').
LinearQuantModeArg = Annotated[Union[LinearQuantMode, str], PlainValidator(parse_linear_quant_mode)]
#: One mode for activations and weights, or ``{'activations': mode, 'weights': mode}``.
QuantModeArg = Annotated[Union[LinearQuantMode, str, ModuleQuantMode, Mapping[str, Union[LinearQuantMode, str]]],
                         PlainValidator(verify_quant_mode)]
#: A ClipMode or its name in any case ('none', 'avg', 'n_std', 'gauss', 'laplace').
ClipModeArg = Annotated[Union[ClipMode, str], PlainValidator(parse_clip_mode)]
#: Bit width of a symmetric signed range (one bit is the sign).
SymmetricBitWidth = Annotated[int, Range(2, 32)]

#: A saturation value or quantization parameter: a python number or a (per-channel) tensor.
_T = TypeVar("_T", float, torch.Tensor)
_Number = Union[float, torch.Tensor]


def get_quantized_range(num_bits: int, signed: bool = True, signed_restrict_qrange: bool = False) -> tuple[int, int]:
    """Returns the integer range (qmin, qmax) of a ``num_bits`` quantized value."""
    if signed:
        qmax = 2 ** (num_bits - 1) - 1
        return (-qmax if signed_restrict_qrange else -qmax - 1), qmax
    return 0, 2 ** num_bits - 1


def quantized_range_for_mode(num_bits: int, mode: LinearQuantModeArg) -> tuple[int, int]:
    """Integer range (qmin, qmax) that values quantized in ``mode`` occupy."""
    mode = parse_linear_quant_mode(mode)
    return get_quantized_range(num_bits, signed=mode != LinearQuantMode.ASYMMETRIC_UNSIGNED,
                               signed_restrict_qrange=mode == LinearQuantMode.SYMMETRIC_RESTRICTED)


def _as_float_tensor(value: Union[float, torch.Tensor]) -> torch.Tensor:
    """``value`` as a tensor of at least float32 precision (float64 stays float64)."""
    if not isinstance(value, torch.Tensor):
        return torch.tensor(float(value))
    return value.to(torch.promote_types(value.dtype, torch.float32)) if value.is_floating_point() else value.float()


def _maybe_scalar(template: Any, first: torch.Tensor, second: torch.Tensor) -> tuple[Any, Any]:
    """Returns python floats when the inputs were python numbers, tensors otherwise."""
    if isinstance(template, torch.Tensor):
        return first, second
    return first.item(), second.item()


def symmetric_linear_quantization_params(num_bits: SymmetricBitWidth, saturation_val: _T,
                                         restrict_qrange: bool = False) -> tuple[_T, _T]:
    """Scale and zero point (always 0) mapping [-sat, sat] onto the signed ``num_bits`` range.

    Without ``restrict_qrange`` the real range spans (2^b - 1) / 2 integer steps on each side
    (so 8 bits use all of [-128, 127]); with it, 2^(b-1) - 1 steps ([-127, 127]).
    A saturation value of 0 gives scale 1.

    Raises:
        distiller.errors.ArgumentError: ``num_bits`` not an int in 2..32 (a symmetric signed range needs two
            bits).
        ValueError: negative saturation.
    """
    # check_value rather than @validated: this runs for every forward pass of quantization-aware training.
    num_bits = check_value("symmetric_linear_quantization_params", "num_bits", SymmetricBitWidth, num_bits)
    sat = _as_float_tensor(saturation_val)
    if (sat < 0).any():
        raise ValueError("symmetric saturation values must be non-negative (pass max |x|)")
    n = 2 ** (num_bits - 1) - 1 if restrict_qrange else (2 ** num_bits - 1) / 2
    sat = torch.where(sat == 0, torch.full_like(sat, n), sat)
    scale = n / sat
    return _maybe_scalar(saturation_val, scale, torch.zeros_like(scale))


def asymmetric_linear_quantization_params(num_bits: BitWidth, saturation_min: _T, saturation_max: _Number,
                                          integral_zero_point: bool = True, signed: bool = False) -> tuple[_T, _T]:
    """Scale and zero point mapping [sat_min, sat_max] (extended to include 0) onto ``num_bits``.

    Unsigned output range [0, 2^b-1]; with ``signed`` the zero point shifts it to [-2^(b-1), 2^(b-1)-1].
    With ``integral_zero_point`` (the default) real 0 maps exactly onto an integer.

    Raises:
        distiller.errors.ArgumentError: ``num_bits`` not an int in 1..32.
        ValueError: sat_min > sat_max.
    """
    num_bits = check_value("asymmetric_linear_quantization_params", "num_bits", BitWidth, num_bits)  # hot: no decorator
    lo, hi = _as_float_tensor(saturation_min), _as_float_tensor(saturation_max)
    if (lo > hi).any():
        raise ValueError(f"saturation_min must be <= saturation_max (got {saturation_min} > {saturation_max})")
    lo, hi = torch.clamp(lo, max=0), torch.clamp(hi, min=0)
    n = 2 ** num_bits - 1
    diff = hi - lo
    diff = torch.where(diff == 0, torch.full_like(diff, n), diff)
    scale = n / diff
    zero_point = scale * lo
    if integral_zero_point:
        zero_point = zero_point.round()
    if signed:
        zero_point = zero_point + 2 ** (num_bits - 1)
    return _maybe_scalar(saturation_min, scale, zero_point)


def linear_quant_params_from_min_max(num_bits: int, mode: LinearQuantModeArg, sat_min: Union[float, torch.Tensor],
                                     sat_max: Union[float, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point for a tensor whose saturation range is [sat_min, sat_max], in ``mode``."""
    mode = parse_linear_quant_mode(mode)
    if mode in (LinearQuantMode.SYMMETRIC, LinearQuantMode.SYMMETRIC_RESTRICTED):
        sat = torch.max(_as_float_tensor(sat_min).abs(), _as_float_tensor(sat_max).abs())
        return symmetric_linear_quantization_params(num_bits, sat,
                                                    restrict_qrange=mode == LinearQuantMode.SYMMETRIC_RESTRICTED)
    return asymmetric_linear_quantization_params(num_bits, _as_float_tensor(sat_min), _as_float_tensor(sat_max),
                                                 signed=mode == LinearQuantMode.ASYMMETRIC_SIGNED)


def linear_quant_params_from_tensor(tensor: torch.Tensor, num_bits: int, mode: LinearQuantModeArg,
                                    per_channel: bool = False, clip: ClipModeArg = ClipMode.NONE,
                                    num_stds: Optional[float] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point for ``tensor`` itself (typically weights), optionally per output channel.

    Args:
        clip: ClipMode.NONE (actual range), N_STD (needs ``num_stds``), GAUSS or LAPLACE. AVG needs
            several batches and is meaningless for a single tensor: ArgumentError.
    """
    clip = parse_clip_mode(clip)
    dim: Optional[Literal[0]] = 0 if per_channel else None
    if clip == ClipMode.NONE:
        sat_min, sat_max = get_tensor_min_max(tensor, per_dim=dim)
    elif clip == ClipMode.N_STD:
        if num_stds is None:
            raise ArgumentError("ClipMode.N_STD needs num_stds")
        sat_min, sat_max = get_tensor_mean_n_stds_min_max(tensor, dim=dim, n_stds=num_stds)
    elif clip in (ClipMode.GAUSS, ClipMode.LAPLACE):
        sat_min, sat_max = get_tensor_aciq_min_max(tensor, clip, num_bits, per_dim=dim)
    else:
        raise ArgumentError(f"{clip} needs statistics over several batches; use NONE, N_STD, GAUSS or LAPLACE")
    scale, zero_point = linear_quant_params_from_min_max(num_bits, mode, sat_min, sat_max)
    if per_channel:
        shape = (-1,) + (1,) * (tensor.dim() - 1)
        scale, zero_point = scale.view(shape), zero_point.view(shape)
    return scale, zero_point


def linear_quantize(input: torch.Tensor, scale: _Number, zero_point: _Number, inplace: bool = False) -> torch.Tensor:
    """``round(scale * input - zero_point)`` (no clamping)."""
    if inplace:
        return input.mul_(scale).sub_(zero_point).round_()
    return torch.round(scale * input - zero_point)


def linear_quantize_clamp(input: torch.Tensor, scale: _Number, zero_point: _Number, clamp_min: float,
                          clamp_max: float, inplace: bool = False) -> torch.Tensor:
    """Quantizes and clamps to the integer range [clamp_min, clamp_max]."""
    output = linear_quantize(input, scale, zero_point, inplace)
    return output.clamp_(clamp_min, clamp_max) if inplace else output.clamp(clamp_min, clamp_max)


def clamp_to_quantized_range(input: torch.Tensor, scale: _Number, zero_point: _Number, num_bits: int,
                             mode: LinearQuantModeArg) -> torch.Tensor:
    """``input`` clamped to the real values that ``num_bits`` integers in ``mode`` represent, so that quantizing it
    stays in the integer range (a symmetric range spans 127.5 steps each side for 8 bits: its maximum would round
    to 128). Gradient zero where it clamps, as for a saturating range."""
    qmin, qmax = quantized_range_for_mode(num_bits, mode)
    as_tensor = torch.as_tensor(scale, device=input.device)
    real_min = linear_dequantize(torch.full_like(as_tensor, float(qmin), dtype=input.dtype), scale, zero_point)
    real_max = linear_dequantize(torch.full_like(as_tensor, float(qmax), dtype=input.dtype), scale, zero_point)
    return torch.clamp(input, real_min, real_max)


def linear_dequantize(input: torch.Tensor, scale: _Number, zero_point: _Number, inplace: bool = False) -> torch.Tensor:
    """``(input + zero_point) / scale``: the real value an integer stands for."""
    if inplace:
        return input.add_(zero_point).div_(scale)
    return (input + zero_point) / scale


class LinearQuantizeSTE(torch.autograd.Function):
    """Quantization (optionally followed by dequantization) with a straight-through gradient.

    The forward rounds; the backward passes the incoming gradient unchanged to ``input`` (Bengio et al.
    2013). Clamp before calling it so values outside the range get zero gradient.

    Example:
        >>> y = LinearQuantizeSTE.apply(x, scale, zero_point, True, False)  # fake-quantized x
    """

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, scale: _Number, zero_point: _Number, dequantize: bool,
                inplace: bool) -> torch.Tensor:
        if inplace:
            ctx.mark_dirty(input)
        output = linear_quantize(input, scale, zero_point, inplace)
        if dequantize:
            output = linear_dequantize(output, scale, zero_point, inplace)
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        return grad_output, None, None, None, None


# ---------------------------------------------------------------------------------------- statistics

def _reduce(tensor: torch.Tensor, per_dim: Optional[int], op: Callable[..., torch.Tensor]) -> torch.Tensor:
    if per_dim is None:
        return op(tensor.reshape(-1), dim=0)
    return op(tensor.transpose(0, per_dim).reshape(tensor.shape[per_dim], -1), dim=1)


def get_tensor_min_max(t: torch.Tensor, per_dim: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of the whole tensor, or per index of ``per_dim`` (1-D tensors)."""
    return _reduce(t, per_dim, torch.amin), _reduce(t, per_dim, torch.amax)


def get_tensor_avg_min_max(t: torch.Tensor, across_dim: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over ``across_dim`` (e.g. the batch) of the per-slice min and max; plain min/max if None."""
    if across_dim is None:
        return get_tensor_min_max(t)
    mins, maxs = get_tensor_min_max(t, per_dim=across_dim)
    return mins.mean(), maxs.mean()


def get_tensor_max_abs(t: torch.Tensor, per_dim: Optional[int] = None) -> torch.Tensor:
    """max |t|, whole tensor or per index of ``per_dim``."""
    mins, maxs = get_tensor_min_max(t, per_dim)
    return torch.max(mins.abs(), maxs.abs())


def get_tensor_avg_max_abs(t: torch.Tensor, across_dim: Optional[int] = None) -> torch.Tensor:
    """Mean over ``across_dim`` of the per-slice max |t|."""
    mins, maxs = get_tensor_avg_min_max(t, across_dim)
    return torch.max(mins.abs(), maxs.abs())


def get_tensor_mean_n_stds_min_max(t: torch.Tensor, dim: Optional[int] = None,
                                   n_stds: float = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """mean -/+ ``n_stds`` standard deviations, never beyond the actual min/max."""
    mean = _reduce(t.float(), dim, torch.mean)
    std = _reduce(t.float(), dim, lambda x, dim: torch.std(x, dim=dim, unbiased=False))
    mins, maxs = get_tensor_min_max(t, dim)
    return torch.max(mean - n_stds * std, mins), torch.min(mean + n_stds * std, maxs)


def _aciq_expected_mse(alpha: float, num_bits: int, clip_mode: ClipMode) -> float:
    """Banner et al. (2019) eq. 5/6 for a unit-scale distribution: clipping noise + rounding noise."""
    rounding = alpha ** 2 / (3 * 4 ** num_bits)
    if clip_mode == ClipMode.LAPLACE:  # Laplace(0, b=1)
        return 2 * math.exp(-alpha) + rounding
    # Gaussian N(0, 1): 2 * E[(X - alpha)^2; X > alpha]
    tail = 0.5 * math.erfc(alpha / math.sqrt(2))
    density = math.exp(-alpha ** 2 / 2) / math.sqrt(2 * math.pi)
    return 2 * ((alpha ** 2 + 1) * tail - alpha * density) + rounding


@functools.cache
def aciq_clip_multiplier(clip_mode: ClipModeArg, num_bits: BitWidth) -> float:
    """MSE-optimal clipping value alpha for a ``num_bits`` quantizer over [-alpha, alpha].

    In units of the Laplace scale ``b`` (mean absolute deviation) for ClipMode.LAPLACE, or of the
    standard deviation for ClipMode.GAUSS; found by minimising Banner et al.'s analytical MSE
    (e.g. 4 bits: 5.03 b for Laplace, 2.55 sigma for Gauss).
    """
    from scipy.optimize import minimize_scalar  # heavy import, only needed for ACIQ clipping

    clip_mode = parse_clip_mode(clip_mode)
    if clip_mode not in (ClipMode.GAUSS, ClipMode.LAPLACE):
        raise ArgumentError(f"analytical clipping exists for ClipMode.GAUSS and ClipMode.LAPLACE, not {clip_mode}")
    num_bits = check_value("aciq_clip_multiplier", "num_bits", BitWidth, num_bits)
    result = minimize_scalar(_aciq_expected_mse, bounds=(1e-3, 60.0), args=(num_bits, clip_mode),
                             method="bounded", options={"xatol": 1e-6})
    return float(result.x)


def get_tensor_aciq_min_max(t: torch.Tensor, clip_mode: ClipModeArg, num_bits: int,
                            per_dim: Optional[Literal[0]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ACIQ saturation range: mean -/+ alpha, with alpha = multiplier * (b or sigma) of ``t``.

    ``per_dim`` is None (whole tensor) or 0 (per output channel). The range never extends beyond the
    actual min/max of ``t``.
    """
    clip_mode = parse_clip_mode(clip_mode)
    per_dim = check_value("get_tensor_aciq_min_max", "per_dim", Optional[Literal[0]], per_dim)
    t = t.float()
    mean = _reduce(t, per_dim, torch.mean)
    centred = t - (mean if per_dim is None else mean.view((-1,) + (1,) * (t.dim() - 1)))
    if clip_mode == ClipMode.LAPLACE:
        spread = _reduce(centred.abs(), per_dim, torch.mean)
    else:
        spread = _reduce(centred, per_dim, lambda x, dim: torch.std(x, dim=dim, unbiased=False))
    alpha = aciq_clip_multiplier(clip_mode, num_bits) * spread
    mins, maxs = get_tensor_min_max(t, per_dim)
    return torch.max(mean - alpha, mins), torch.min(mean + alpha, maxs)


# ------------------------------------------------------------------------ integer scale approximation

def get_scale_approximation_params(fp32_scale: _T, mult_bits: BitWidth, limit: bool = False) -> tuple[_T, _T]:
    """Integer multiplier and shift such that ``fp32_scale ~= multiplier / 2**shift`` (Jacob et al. 2018).

    The multiplier uses at most ``mult_bits`` bits; with ``limit`` the shift is also at most ``mult_bits``.
    Works element-wise on tensors (per-channel scales).
    """
    mult_bits = check_value("get_scale_approximation_params", "mult_bits", BitWidth, mult_bits)
    scale = _as_float_tensor(fp32_scale).double()
    if (scale <= 0).any():
        raise ValueError("scales to approximate must be positive")
    shift = torch.floor(torch.log2((2 ** mult_bits - 1) / scale))
    if limit:
        shift = torch.clamp(shift, max=mult_bits)
    multiplier = torch.floor(scale * 2 ** shift)
    return _maybe_scalar(fp32_scale, multiplier, shift)


def approx_scale_as_mult_and_shift(fp32_scale: _T, mult_bits: int, limit: bool = False) -> _T:
    """The value of ``fp32_scale`` after approximating it by an integer multiplier and shift."""
    multiplier, shift = get_scale_approximation_params(fp32_scale, mult_bits, limit)
    if isinstance(fp32_scale, torch.Tensor):
        return (multiplier / 2 ** shift).to(fp32_scale.dtype)
    return multiplier / 2 ** shift
