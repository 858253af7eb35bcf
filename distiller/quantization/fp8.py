"""FP8 (E4M3) post-training quantization of ``nn.Linear`` layers.

Weights and activations are scaled into the E4M3 range (largest value 448) and cast to
``torch.float8_e4m3fn``, with one scale per tensor or one per row (weights: per output feature;
activations: per token, computed on the fly). The product runs on the GPU's FP8 matrix units through
``torch._scaled_mm`` on CUDA devices of compute capability 8.9 or newer (Ada, Hopper, Blackwell)
whose shapes the kernel accepts (dimensions divisible by 16); everywhere else it is simulated by
casting to FP8 and back and multiplying in the input dtype, which gives the same values up to
accumulation order. A log line says (once per process) when the simulation is used. Format from
Micikevicius et al., "FP8 Formats for Deep Learning", 2022.

Use it through :class:`~distiller.quantization.PostTrainLinearQuantizer` (``fp8=True``, optionally
``fp8_scaling: per_row``) or directly with :class:`FP8LinearWrapper`.
"""
from __future__ import annotations

import logging
import typing
from collections.abc import Mapping
from typing import Any, Literal, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..graph.cost import register_layer_wrapper
from ..spec import validated

__all__ = ["FP8LinearWrapper", "FP8_E4M3_MAX", "FP8Scaling", "FP8_SCALINGS", "fp8_scaled_mm_supported",
           "quantize_to_fp8",
           "fp8_scaled_matmul"]

logger = logging.getLogger(__name__)

FP8_DTYPE = torch.float8_e4m3fn
FP8_E4M3_MAX = float(torch.finfo(FP8_DTYPE).max)
#: FP8 scale granularity: one scale per tensor, or one per row (weights: output feature; activations: token).
FP8Scaling = Literal["per_tensor", "per_row"]
FP8_SCALINGS: tuple[str, ...] = typing.get_args(FP8Scaling)
_logged_simulation: set[tuple[str, str]] = set()
#: Output dtypes torch._scaled_mm produces with per-tensor scales.
_SCALED_MM_OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def fp8_scaled_mm_supported(device: Union[str, torch.device]) -> bool:
    """Whether ``torch._scaled_mm`` runs FP8 matrix products on ``device`` (CUDA, capability >= 8.9)."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def quantize_to_fp8(tensor: torch.Tensor, per_row: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (fp8 tensor, float32 scale) with ``tensor ~= fp8.float() * scale``.

    ``per_row`` gives one scale per row of a 2-D tensor (shape ``(rows, 1)``); else a 0-d scale.
    """
    amax = tensor.detach().abs().amax(dim=1, keepdim=True) if per_row else tensor.detach().abs().amax()
    scale = (amax.float() / FP8_E4M3_MAX).clamp(min=torch.finfo(torch.float32).tiny)
    fp8 = (tensor.float() / scale).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(FP8_DTYPE)
    return fp8, scale


def fp8_scaled_matmul(x_fp8: torch.Tensor, x_scale: torch.Tensor, w_fp8: torch.Tensor, w_scale: torch.Tensor,
                      out_dtype: torch.dtype) -> torch.Tensor:
    """``(x_fp8 * x_scale) @ (w_fp8 * w_scale).T`` with ``torch._scaled_mm``.

    Args:
        x_fp8: (M, K) E4M3 activations; x_scale: 0-d or (M, 1) scales (the kernel gets them in float32).
        w_fp8: (N, K) E4M3 weights (row-major, so ``w_fp8.t()`` is the column-major operand the kernel
            wants); w_scale: 0-d or (N, 1) scales.
    """
    scale_b = w_scale.reshape(1, -1) if w_scale.dim() else w_scale
    return torch._scaled_mm(x_fp8.contiguous(), w_fp8.t(), scale_a=x_scale.float(), scale_b=scale_b.float(),
                            out_dtype=out_dtype)


def _log_simulation_once(device: torch.device, reason: str) -> None:
    key = (str(device), reason)
    if key not in _logged_simulation:
        _logged_simulation.add(key)
        logger.info("FP8 matrix products on %s are simulated (cast to float8_e4m3fn and back): %s", device, reason)


@register_layer_wrapper("wrapped_module")
class FP8LinearWrapper(nn.Module):
    """An ``nn.Linear`` computing with E4M3 weights and activations.

    Args:
        wrapped_module: the ``nn.Linear``; its float weight is kept, the FP8 copy lives in ``weight_fp8``.
        scaling: ``'per_tensor'`` or ``'per_row'``.
        activation_stats: calibration statistics of the layer (``{'inputs': {0: {min, max, ...}}}``); with
            per-tensor scaling they fix the activation scale, otherwise it is measured on each batch.
            Per-row activation scales are always measured on the batch (one per token).
    Raises:
        TypeError: ``wrapped_module`` is not an ``nn.Linear``.
        distiller.errors.ArgumentError: unknown ``scaling`` (or another argument of the wrong type).
    """

    wrapped_module: nn.Linear
    weight_fp8: torch.Tensor
    weight_scale: torch.Tensor
    input_scale: torch.Tensor

    @validated
    def __init__(self, wrapped_module: nn.Module, scaling: FP8Scaling = "per_tensor",
                 activation_stats: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        if not isinstance(wrapped_module, nn.Linear):
            raise TypeError(f"FP8 quantization applies to nn.Linear layers, not {type(wrapped_module).__name__}")
        self.wrapped_module = wrapped_module
        self.scaling = scaling
        weight_fp8, weight_scale = quantize_to_fp8(wrapped_module.weight, per_row=scaling == "per_row")
        self.register_buffer("weight_fp8", weight_fp8)
        self.register_buffer("weight_scale", weight_scale)
        static = None
        if activation_stats is not None and scaling == "per_tensor":
            stats = (activation_stats.get("inputs") or {})
            stats = stats.get(0, stats.get("0"))
            if stats is not None:
                static = max(abs(stats["min"]), abs(stats["max"])) / FP8_E4M3_MAX
        self.register_buffer("input_scale", torch.tensor(static if static else float("nan"),
                                                         device=wrapped_module.weight.device))
        # whether input_scale is static, kept on the host: testing the (device) buffer in every forward would
        # make the host wait for the GPU
        self._static_input_scale = static is not None and static > 0
        self.register_load_state_dict_post_hook(FP8LinearWrapper._refresh_static_input_scale)  # (module, keys)

    def _refresh_static_input_scale(self, incompatible_keys: Any) -> None:
        self._static_input_scale = not torch.isnan(self.input_scale).item()

    def _quantize_input(self, x2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._static_input_scale:
            scale = self.input_scale.clamp(min=torch.finfo(torch.float32).tiny)
            return (x2d.float() / scale).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(FP8_DTYPE), scale
        return quantize_to_fp8(x2d, per_row=self.scaling == "per_row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2d = x.reshape(-1, shape[-1])
        x_fp8, x_scale = self._quantize_input(x2d)
        n, k = self.weight_fp8.shape
        if fp8_scaled_mm_supported(x.device) and k % 16 == 0 and n % 16 == 0:
            # row-wise scaling produces bfloat16 only; per-tensor scaling the input's dtype directly where it can
            out_dtype = (torch.bfloat16 if self.scaling == "per_row" else
                         x.dtype if x.dtype in _SCALED_MM_OUT_DTYPES else torch.float32)
            y = fp8_scaled_matmul(x_fp8, x_scale, self.weight_fp8, self.weight_scale, out_dtype).to(x.dtype)
        else:
            reason = ("no CUDA device of compute capability >= 8.9" if not fp8_scaled_mm_supported(x.device)
                      else f"layer shape ({n}, {k}) is not a multiple of 16")
            _log_simulation_once(x.device, reason)
            y = F.linear((x_fp8.to(x.dtype) * x_scale.to(x.dtype)),
                         self.weight_fp8.to(x.dtype) * self.weight_scale.to(x.dtype))
        if self.wrapped_module.bias is not None:
            y = y + self.wrapped_module.bias
        return y.reshape(*shape[:-1], n)

    def extra_repr(self) -> str:
        return f"scaling={self.scaling}, static_input_scale={self._static_input_scale}"
