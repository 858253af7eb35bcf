"""How each kind of operation moves channels: the tables the channel-flow analysis dispatches on.

Modules with a :class:`~distiller.graph.layer_rules.LayerRule` (convolutions, linear layers, norms, ...;
open to user rules) are ``'layer'`` ops; elementwise modules and functions, pooling, reductions and data
movement are classified by the tables below. An operation the tables do not know is *opaque*: the
channels it reads are left whole, with a logged reason naming it.
"""
import operator

import torch
import torch.nn.functional as F
from torch import nn

from .layer_rules import layer_rule_for

__all__ = ["classify", "binary_kind"]


def _functions(*names):
    """The callables called ``names`` in torch, torch.nn.functional, operator and torchvision.ops."""
    namespaces = [torch, F, operator]
    try:
        import torchvision.ops
        namespaces.append(torchvision.ops)
    except ImportError:  # torchvision is optional for thinning
        pass
    return {getattr(ns, name) for name in names for ns in namespaces if callable(getattr(ns, name, None))}


# Elementwise functions with f(0) == 0 (a zero channel stays zero) and without.
_ZERO_PRESERVING = ("relu", "relu_", "relu6", "silu", "gelu", "hardswish", "tanh", "leaky_relu", "leaky_relu_",
                    "elu", "selu", "celu", "mish", "hardtanh", "hardtanh_", "softsign", "softshrink", "hardshrink",
                    "tanhshrink", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
                    "feature_alpha_dropout", "stochastic_depth", "clone", "detach", "neg", "abs")
_CASTS = ("to", "type", "type_as", "float", "half", "double", "bfloat16", "cpu", "cuda")
_NONZERO = ("sigmoid", "sigmoid_", "hardsigmoid", "exp", "softplus", "logsigmoid", "cos")
_BINARY = {"add": "add", "add_": "add", "iadd": "add", "sub": "add", "sub_": "add", "isub": "add",
           "mul": "mul", "mul_": "mul", "imul": "mul", "truediv": "div", "div": "div", "div_": "div",
           "itruediv": "div"}
_SPATIAL = ("max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
            "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
            "adaptive_max_pool2d", "adaptive_max_pool3d", "interpolate", "upsample", "lp_pool2d", "pad")
_REDUCTIONS = ("mean", "sum", "amax", "amin")
_MOVEMENT = ("flatten", "reshape", "view", "view_as", "reshape_as", "cat", "concat", "concatenate", "split",
             "chunk", "getitem", "transpose", "permute", "contiguous", "squeeze", "unsqueeze", "narrow", "expand",
             "expand_as", "unflatten", "movedim", "swapaxes", "t", "pixel_shuffle", "pixel_unshuffle",
             "channel_shuffle")
_CONSTANTS = ("zeros", "ones", "full", "empty", "arange", "zeros_like", "ones_like", "full_like", "empty_like",
              "rand_like", "randn_like", "tensor")
_SCALARS = ("size", "dim", "numel", "getattr", "len")
_SOFTMAX = ("softmax", "log_softmax")
_MATMUL = ("matmul", "bmm")
_ATTENTION = ("scaled_dot_product_attention",)

_FUNCTION_KINDS = {}
for _names, _kind in ((_ZERO_PRESERVING + _CASTS, "zero_preserving"), (_NONZERO, "nonzero"), (_SOFTMAX, "softmax"),
                      (_MATMUL, "matmul"), (_ATTENTION, "attention"),
                      (_SPATIAL, "spatial"), (_REDUCTIONS, "reduction"), (_MOVEMENT, "movement"),
                      (_CONSTANTS, "constant"), (_SCALARS, "scalar")):
    for _name in _names:
        _FUNCTION_KINDS[_name] = _kind
for _name in _BINARY:
    _FUNCTION_KINDS[_name] = "binary"
_KNOWN_CALLABLES = _functions(*_FUNCTION_KINDS) | {getattr, len}

_ZERO_PRESERVING_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Tanh, nn.ELU,
                            nn.SELU, nn.CELU, nn.Mish, nn.Softsign, nn.Softshrink, nn.Hardshrink, nn.Tanhshrink,
                            nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                            nn.FeatureAlphaDropout)
_NONZERO_MODULES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softplus, nn.LogSigmoid)
_SPATIAL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample, nn.ZeroPad1d, nn.ZeroPad2d,
                    nn.ZeroPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d)
_MOVEMENT_MODULES = (nn.Flatten, nn.Unflatten, nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle)


def _module_kind(module):
    if layer_rule_for(module) is not None:
        return "layer"
    if isinstance(module, nn.Hardtanh):
        return "zero_preserving" if module.min_val <= 0 <= module.max_val else "nonzero"
    if isinstance(module, _ZERO_PRESERVING_MODULES) or type(module).__name__ == "StochasticDepth":
        return "zero_preserving"
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        return "softmax"
    if isinstance(module, _NONZERO_MODULES):
        return "nonzero"
    if isinstance(module, _SPATIAL_MODULES):
        return "spatial"
    if isinstance(module, _MOVEMENT_MODULES):
        return "movement"
    return "opaque"


def classify(op):
    """The channel-flow kind of a graph op.

    Returns:
        one of ``'input'``, ``'attribute'``, ``'output'``, ``'layer'`` (a module with a layer rule),
        ``'zero_preserving'`` / ``'nonzero'`` (elementwise, keeping zeros or not), ``'binary'`` (add/sub,
        mul, div: see :func:`binary_kind`), ``'spatial'`` (per-channel pooling/resampling/padding),
        ``'reduction'``, ``'movement'`` (pure data movement: view, cat, split...), ``'constant'``,
        ``'scalar'`` (sizes and other Python values), ``'softmax'``, ``'matmul'`` (batched matrix products),
        ``'attention'`` (``scaled_dot_product_attention``) or ``'opaque'``.
    """
    if op.kind in ("input", "attribute", "output"):
        return op.kind
    if op.kind == "module":
        return _module_kind(op.module)
    if op.kind == "function" and op.target not in _KNOWN_CALLABLES:
        return "opaque"
    return _FUNCTION_KINDS.get(op.type, "opaque")


def binary_kind(op):
    """``'add'`` (also sub), ``'mul'`` or ``'div'`` for a binary op."""
    return _BINARY[op.type]
