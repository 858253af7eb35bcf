"""Per-channel statistics of weights and activations, under Distiller's ``distiller.utils`` names.

Activation statistics take a batch ``[N, C, *spatial]`` (or ``[N, C]``) and return one value per channel,
averaged over the batch, on the CPU (so results from several devices can be summed), as Distiller did.
"""
import torch

from ..errors import ArgumentError
from ..norms import channels_lp_norm, filters_lp_norm

__all__ = ["non_zero_channels", "norm_filters", "activation_channels_l1", "activation_channels_means",
           "activation_channels_apoz"]


def _check_conv_weight(tensor: torch.Tensor, name: str) -> None:
    if tensor.dim() != 4:
        raise ArgumentError(f"{name} expects a 4D convolution weight, got shape {tuple(tensor.shape)}")


def non_zero_channels(tensor: torch.Tensor) -> torch.Tensor:
    """Indices of the input channels of a 4D conv weight that have at least one non-zero coefficient.

    Returns:
        ``torch.nonzero`` of the per-channel L1 norms: a ``[k, 1]`` int64 tensor, as in Distiller.
    """
    _check_conv_weight(tensor, "non_zero_channels")
    return torch.nonzero(channels_lp_norm(tensor.detach(), p=1))


def norm_filters(weights: torch.Tensor, p: float = 1) -> torch.Tensor:
    """The ``p``-norm of each filter of a 4D conv weight (one value per output channel)."""
    _check_conv_weight(weights, "norm_filters")
    return filters_lp_norm(weights, p=p)


def _per_sample_channels(activation: torch.Tensor) -> torch.Tensor:
    """``activation`` as ``[N, C, positions]`` (positions = 1 for ``[N, C]``)."""
    if activation.dim() < 2:
        raise ArgumentError(f"activation statistics need a batch [N, C, ...], got shape {tuple(activation.shape)}")
    return activation.detach().reshape(activation.shape[0], activation.shape[1], -1)


def activation_channels_l1(activation: torch.Tensor) -> torch.Tensor:
    """Per channel: the batch mean of the L1 norm of the channel's feature map."""
    return _per_sample_channels(activation).abs().sum(dim=2).mean(dim=0).cpu()


def activation_channels_means(activation: torch.Tensor) -> torch.Tensor:
    """Per channel: the batch mean of the feature map's mean (global average pooling, then batch mean;
    Molchanov et al. 2016, "Pruning Convolutional Neural Networks for Resource Efficient Inference")."""
    return _per_sample_channels(activation).mean(dim=2).mean(dim=0).cpu()


def activation_channels_apoz(activation: torch.Tensor) -> torch.Tensor:
    """Per channel: the Average Percentage of Zeros (0-100) of its feature maps over the batch (Hu et al. 2016,
    "Network Trimming: A Data-Driven Neuron Pruning Approach towards Efficient Deep Architectures").

    Values that are not positive count as zeros, so a pre-activation gives the APoZ its ReLU would produce.
    """
    positive = _per_sample_channels(activation).gt(0).float().mean(dim=2)
    return (100.0 - 100.0 * positive.mean(dim=0)).cpu()
