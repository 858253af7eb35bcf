"""Simulated BatchNorm folding for quantization-aware training.

At inference a BatchNorm that follows a convolution/linear layer is folded into its weights
(``W * gamma / sigma``) and the *folded* weights are what gets quantized. :class:`SimulatedFoldedBatchNorm`
trains with that folded, quantized weight (Jacob et al. 2018, section 3.2; Krishnamoorthi 2018,
"Quantizing deep convolutional networks for efficient inference: A whitepaper", section 3.2.2):

* before the BN statistics are frozen, an extra float pass computes the batch mean/variance, the weights
  are folded with the running sigma and the output is corrected by ``sigma_running / sigma_batch`` so
  training sees batch statistics;
* after ``freeze_bn_delay`` training steps (and always in eval mode) the running statistics are used and
  no longer updated: the layer computes exactly what the folded inference layer will.
"""
from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Optional, Union

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from ..graph.capture import GraphCaptureError
from ..graph.cost import register_layer_wrapper
from ..spec import NonNegativeInt, validated
from .base import ParamQuantizationFn, ParamToQuant, QBits, inner_model

__all__ = ["SimulatedFoldedBatchNorm", "fold_batchnorm_pairs", "find_batchnorm_pairs"]

#: A layer whose output a BatchNorm can be folded into.
FoldableLayer = Union[nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear]
_FOLDABLE: dict[type[nn.Module], type[nn.Module]] = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d,
                                                     nn.Conv3d: nn.BatchNorm3d, nn.Linear: nn.BatchNorm1d}


@register_layer_wrapper("param_module")
class SimulatedFoldedBatchNorm(nn.Module):
    """A conv/linear layer and the BatchNorm after it, trained as their folded (and quantized) equivalent.

    Args:
        param_module: ``nn.Conv1d/2d/3d`` or ``nn.Linear`` (its bias, if any, is folded too).
        bn: the ``nn.BatchNorm*d`` that consumes its output (must track running statistics).
        freeze_bn_delay: training steps (counted in ``bn.num_batches_tracked``) after which the BN
            statistics are frozen.
        param_quantization_fn: ``fn(folded_weight) -> quantized weight``; None trains the folded float
            weight.
    Raises:
        distiller.errors.ArgumentError: an argument of the wrong type (e.g. a layer that is not foldable).
        TypeError: a layer/BN pair that cannot be folded (a BatchNorm of the wrong dimension, or without
            running statistics).
    """

    @validated
    def __init__(self, param_module: FoldableLayer, bn: _BatchNorm, freeze_bn_delay: NonNegativeInt = 200000,
                 param_quantization_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
        super().__init__()
        expected_bn = _FOLDABLE.get(type(param_module))
        if expected_bn is None or type(bn) is not expected_bn:
            raise TypeError(f"cannot fold {type(bn).__name__} into {type(param_module).__name__}; foldable pairs: "
                            + ", ".join(f"{p.__name__}+{b.__name__}" for p, b in _FOLDABLE.items()))
        if not bn.track_running_stats:
            raise TypeError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
        self.param_module, self.bn = param_module, bn
        self.freeze_bn_delay = freeze_bn_delay
        self.param_quantization_fn = param_quantization_fn

    @property
    def frozen(self) -> bool:
        """Whether the BN statistics are frozen (``freeze_bn_delay`` training steps done)."""
        return int(self._running_stats()[2]) >= self.freeze_bn_delay

    def _run(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        if isinstance(self.param_module, nn.Linear):
            return F.linear(x, weight, bias)
        return self.param_module._conv_forward(x, weight, bias)

    def _per_channel(self, t: torch.Tensor, ndim: int, dim: int) -> torch.Tensor:
        shape = [1] * ndim
        shape[dim] = -1
        return t.view(shape)

    def _running_stats(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The BN's running mean, variance and batch count (it tracks them: checked on construction)."""
        bn = self.bn
        assert bn.running_mean is not None and bn.running_var is not None and bn.num_batches_tracked is not None
        return bn.running_mean, bn.running_var, bn.num_batches_tracked

    def _gamma_beta(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.bn
        if bn.affine:
            return bn.weight, bn.bias
        mean, var, _ = self._running_stats()
        return torch.ones_like(var), torch.zeros_like(mean)

    def _folded_weight(self, gamma: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        weight = self.param_module.weight
        folded = weight * self._per_channel(gamma / sigma, weight.dim(), 0)
        return folded if self.param_quantization_fn is None else self.param_quantization_fn(folded)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        running_mean, running_var, num_batches_tracked = self._running_stats()
        num_batches_tracked += 1
        momentum = self.bn.momentum if self.bn.momentum is not None else 1.0 / float(num_batches_tracked)
        running_mean.mul_(1 - momentum).add_(momentum * mean)
        running_var.mul_(1 - momentum).add_(momentum * var * count / max(count - 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma, beta = self._gamma_beta()
        conv_bias: Union[torch.Tensor, float] = self.param_module.bias if self.param_module.bias is not None else 0.0
        if not self.training or self.frozen:
            running_mean, running_var, _ = self._running_stats()
            sigma = torch.sqrt(running_var + self.bn.eps)
            bias = beta + (conv_bias - running_mean) * gamma / sigma
            return self._run(x, self._folded_weight(gamma, sigma), bias)
        float_out = self._run(x, self.param_module.weight, None)
        dims = [d for d in range(float_out.dim()) if d != 1]
        batch_mean = float_out.mean(dims)
        batch_var = float_out.var(dims, unbiased=False)
        # The BN sees the layer's output including its bias: its running mean does too.
        self._update_running_stats((batch_mean + conv_bias).detach(), batch_var.detach(),
                                   float_out.numel() // float_out.shape[1])
        sigma_running = torch.sqrt(self._running_stats()[1] + self.bn.eps)
        sigma_batch = torch.sqrt(batch_var + self.bn.eps)
        out = self._run(x, self._folded_weight(gamma, sigma_running), None)
        out = out * self._per_channel(sigma_running / sigma_batch, out.dim(), 1)
        # The conv bias shifts the batch mean by the same amount, so it cancels out of the BN output.
        return out + self._per_channel(beta - gamma * batch_mean / sigma_batch, out.dim(), 1)

    def extra_repr(self) -> str:
        return f"freeze_bn_delay={self.freeze_bn_delay}, quantized={self.param_quantization_fn is not None}"


def find_batchnorm_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Names of (layer, BatchNorm) pairs where the BN is the only consumer of a foldable layer's output.

    Raises:
        distiller.graph.capture.GraphCaptureError: the model cannot be traced by ``torch.fx``.
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as err:  # fx raises many types for untraceable Python control flow
        raise GraphCaptureError(f"BatchNorm folding needs a model that torch.fx can trace; tracing "
                                f"{type(model).__name__} failed: {str(err).splitlines()[0]}") from None
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[str(node.target)], _BatchNorm):
            continue
        source = node.args[0] if node.args else None
        if not isinstance(source, torch.fx.Node) or source.op != "call_module":
            continue
        layer_name, bn_name = str(source.target), str(node.target)
        layer, bn = modules[layer_name], modules[bn_name]
        if (_FOLDABLE.get(type(layer)) is type(bn) and len(source.users) == 1 and calls[layer_name] == 1
                and calls[bn_name] == 1 and bn.track_running_stats):
            pairs.append((layer_name, bn_name))
    return pairs


def fold_batchnorm_pairs(model: nn.Module, qbits_map: Mapping[str, QBits], param_quantization_fn: ParamQuantizationFn,
                         freeze_bn_delay: int) -> set[str]:
    """Replaces each foldable layer by a :class:`SimulatedFoldedBatchNorm` and its BN by ``nn.Identity``.

    Args:
        qbits_map: module name -> QBits; the layer's weight bit width (None: folded but not quantized).
        param_quantization_fn: ``fn(tensor, ParamToQuant)``, the quantizer's weight quantization.
    Returns:
        the set of replaced module names (layers and BNs).
    """
    inner = inner_model(model)
    prefix = "module." if inner is not model else ""
    replaced: set[str] = set()
    for layer_name, bn_name in find_batchnorm_pairs(inner):
        # find_batchnorm_pairs only pairs foldable layers with their BatchNorms
        layer = typing.cast(FoldableLayer, inner.get_submodule(layer_name))
        bn = typing.cast(_BatchNorm, inner.get_submodule(bn_name))
        bits = qbits_map[prefix + layer_name].wts
        quantize = None if bits is None else _with_meta(
            param_quantization_fn, ParamToQuant(layer, prefix + layer_name, "weight", "weight", bits))
        _set_submodule(inner, layer_name, SimulatedFoldedBatchNorm(layer, bn, freeze_bn_delay, quantize))
        _set_submodule(inner, bn_name, nn.Identity())
        replaced.update((prefix + layer_name, prefix + bn_name))
    return replaced


def _with_meta(param_quantization_fn: ParamQuantizationFn,
               meta: ParamToQuant) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn(tensor)``: the quantizer's weight quantization of one layer."""
    return lambda tensor: param_quantization_fn(tensor, meta)


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)
