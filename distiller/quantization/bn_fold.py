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
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..graph.capture import GraphCaptureError
from ..graph.cost import register_layer_wrapper
from ..utils import model_is_parallel
from .base import ParamToQuant

__all__ = ["SimulatedFoldedBatchNorm", "fold_batchnorm_pairs", "find_batchnorm_pairs"]

_FOLDABLE = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d,
             nn.Linear: nn.BatchNorm1d}


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
        TypeError: a layer/BN pair that cannot be folded.
    """

    def __init__(self, param_module, bn, freeze_bn_delay=200000, param_quantization_fn=None):
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
    def frozen(self):
        return int(self.bn.num_batches_tracked) >= self.freeze_bn_delay

    def _run(self, x, weight, bias):
        if isinstance(self.param_module, nn.Linear):
            return F.linear(x, weight, bias)
        return self.param_module._conv_forward(x, weight, bias)

    def _per_channel(self, t, ndim, dim):
        shape = [1] * ndim
        shape[dim] = -1
        return t.view(shape)

    def _gamma_beta(self):
        bn = self.bn
        if bn.affine:
            return bn.weight, bn.bias
        return torch.ones_like(bn.running_var), torch.zeros_like(bn.running_mean)

    def _folded_weight(self, gamma, sigma):
        weight = self.param_module.weight
        folded = weight * self._per_channel(gamma / sigma, weight.dim(), 0)
        return folded if self.param_quantization_fn is None else self.param_quantization_fn(folded)

    @torch.no_grad()
    def _update_running_stats(self, mean, var, count):
        bn = self.bn
        bn.num_batches_tracked += 1
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.mul_(1 - momentum).add_(momentum * mean)
        bn.running_var.mul_(1 - momentum).add_(momentum * var * count / max(count - 1, 1))

    def forward(self, x):
        gamma, beta = self._gamma_beta()
        conv_bias = self.param_module.bias if self.param_module.bias is not None else 0.0
        if not self.training or self.frozen:
            sigma = torch.sqrt(self.bn.running_var + self.bn.eps)
            bias = beta + (conv_bias - self.bn.running_mean) * gamma / sigma
            return self._run(x, self._folded_weight(gamma, sigma), bias)
        float_out = self._run(x, self.param_module.weight, None)
        dims = [d for d in range(float_out.dim()) if d != 1]
        batch_mean = float_out.mean(dims)
        batch_var = float_out.var(dims, unbiased=False)
        # The BN sees the layer's output including its bias: its running mean does too.
        self._update_running_stats((batch_mean + conv_bias).detach(), batch_var.detach(),
                                   float_out.numel() // float_out.shape[1])
        sigma_running = torch.sqrt(self.bn.running_var + self.bn.eps)
        sigma_batch = torch.sqrt(batch_var + self.bn.eps)
        out = self._run(x, self._folded_weight(gamma, sigma_running), None)
        out = out * self._per_channel(sigma_running / sigma_batch, out.dim(), 1)
        # The conv bias shifts the batch mean by the same amount, so it cancels out of the BN output.
        return out + self._per_channel(beta - gamma * batch_mean / sigma_batch, out.dim(), 1)

    def extra_repr(self):
        return f"freeze_bn_delay={self.freeze_bn_delay}, quantized={self.param_quantization_fn is not None}"


def find_batchnorm_pairs(model):
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
    calls = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.modules.batchnorm._BatchNorm):
            continue
        source = node.args[0] if node.args else None
        if not isinstance(source, torch.fx.Node) or source.op != "call_module":
            continue
        layer, bn = modules[source.target], modules[node.target]
        if (_FOLDABLE.get(type(layer)) is type(bn) and len(source.users) == 1 and calls[source.target] == 1
                and calls[node.target] == 1 and bn.track_running_stats):
            pairs.append((source.target, node.target))
    return pairs


def fold_batchnorm_pairs(model, qbits_map, param_quantization_fn, freeze_bn_delay):
    """Replaces each foldable layer by a :class:`SimulatedFoldedBatchNorm` and its BN by ``nn.Identity``.

    Args:
        qbits_map: module name -> QBits; the layer's weight bit width (None: folded but not quantized).
        param_quantization_fn: ``fn(tensor, ParamToQuant)``, the quantizer's weight quantization.
    Returns:
        the set of replaced module names (layers and BNs).
    """
    inner = model.module if model_is_parallel(model) else model
    prefix = "module." if inner is not model else ""
    replaced = set()
    for layer_name, bn_name in find_batchnorm_pairs(inner):
        layer, bn = inner.get_submodule(layer_name), inner.get_submodule(bn_name)
        bits = qbits_map[prefix + layer_name].wts
        quantize = None
        if bits is not None:
            meta = ParamToQuant(layer, prefix + layer_name, "weight", "weight", bits)

            def quantize(tensor, meta=meta):
                return param_quantization_fn(tensor, meta)
        _set_submodule(inner, layer_name, SimulatedFoldedBatchNorm(layer, bn, freeze_bn_delay, quantize))
        _set_submodule(inner, bn_name, nn.Identity())
        replaced.update((prefix + layer_name, prefix + bn_name))
    return replaced


def _set_submodule(root, name, module):
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)
