"""Dense compute cost (multiply-accumulates) and parameter counts of single layers.

MACs are counted per sample and *dense-equivalent* (zeros in the weights are not skipped), as in
Distiller's compute summary: only convolutions and fully connected layers are counted.
"""
import math

from torch import nn

__all__ = ["COUNTED_LAYERS", "module_macs", "module_params"]

#: Module classes whose calls have a MAC count.
COUNTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                  nn.Linear)


def module_macs(module, input_shape, output_shape):
    """MACs of one call of ``module`` for one sample.

    The channel counts come from the module's current attributes and the spatial (or token) sizes from
    the shapes, so the count stays right after the module is thinned.

    Args:
        module: any module (non conv/linear modules count 0).
        input_shape: the call's input shape, batch first.
        output_shape: the call's output shape, batch first.
    Returns:
        int: multiply-accumulates per sample.
    """
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
