"""Dense compute cost (multiply-accumulates) and parameter counts of single layers.

MACs are counted per sample and *dense-equivalent* (zeros in the weights are not skipped), as in
Distiller's compute summary: only convolutions and fully connected layers are counted. A module that
computes such a layer without calling it (a quantized layer wrapper, a simulated BatchNorm fold)
registers with :func:`register_layer_wrapper` and counts as the layer it holds, so quantizing a model
does not change its MAC count.
"""
import math
from typing import Callable, Optional

from torch import nn

__all__ = ["COUNTED_LAYERS", "LAYER_WRAPPERS", "counted_layer", "module_macs", "module_params",
           "register_layer_wrapper"]

#: Module classes whose calls have a MAC count.
COUNTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                  nn.Linear)

#: Module classes that compute a counted layer without calling it -> the attribute holding that layer.
LAYER_WRAPPERS: dict[type, str] = {}


def register_layer_wrapper(attribute: str) -> Callable[[type], type]:
    """Class decorator: a call of the decorated module type counts as a call of ``getattr(module, attribute)``.

    Only for wrappers that do the layer's arithmetic themselves (``F.linear``, ``_conv_forward``); a wrapper
    that calls its layer is counted through that call already.

    Example:
        >>> @register_layer_wrapper("wrapped_module")
        ... class MyQuantLinear(nn.Module): ...
    """
    def register(cls: type) -> type:
        LAYER_WRAPPERS[cls] = attribute
        return cls
    return register


def counted_layer(module: nn.Module) -> Optional[nn.Module]:
    """The conv/linear layer whose arithmetic a call of ``module`` performs: the module itself, the layer a
    registered wrapper holds, or None."""
    for cls in type(module).__mro__:
        if cls in LAYER_WRAPPERS:
            return counted_layer(getattr(module, LAYER_WRAPPERS[cls]))
    return module if isinstance(module, COUNTED_LAYERS) else None


def module_macs(module, input_shape, output_shape):
    """MACs of one call of ``module`` for one sample.

    The channel counts come from the module's current attributes and the spatial (or token) sizes from
    the shapes, so the count stays right after the module is thinned.

    Args:
        module: any module (modules without a :func:`counted_layer` count 0).
        input_shape: the call's input shape, batch first.
        output_shape: the call's output shape, batch first.
    Returns:
        int: multiply-accumulates per sample.
    """
    module = counted_layer(module)
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        # Every input pixel is scattered through a full (out_channels/groups x kernel) block.
        in_spatial = math.prod(input_shape[2:])
        return (module.in_channels * in_spatial * (module.out_channels // module.groups)
                * math.prod(module.kernel_size))
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        out_spatial = math.prod(output_shape[2:])
        return (module.out_channels * out_spatial * (module.in_channels // module.groups)
                * math.prod(module.kernel_size))
    if isinstance(module, nn.Linear):
        tokens = math.prod(output_shape[1:-1])
        return tokens * module.in_features * module.out_features
    return 0


def module_params(module):
    """Number of parameter elements that ``module`` itself owns (not its children)."""
    return sum(p.numel() for p in module.parameters(recurse=False))
