"""``LowRankLinear``: a ``nn.Linear`` factorised by truncated SVD into two thinner linear layers.

A ``(out, in)`` weight ``W ≈ U_r S_r V_rᵀ`` becomes ``x -> (U_r S_r) (V_rᵀ x) + b``: ``rank * (in + out)``
weights and multiply-accumulates per sample instead of ``in * out``, which is smaller when
``rank < in * out / (in + out)``. Xue et al. (2013) restructure speech DNNs this way; Denton et al. (2014)
apply the same idea to the fully-connected layers of convolutional networks.

References:
    J. Xue, J. Li, Y. Gong. *Restructuring of Deep Neural Network Acoustic Models with Singular Value
    Decomposition*. Interspeech 2013.
    E. Denton et al. *Exploiting Linear Structure Within Convolutional Networks for Efficient Evaluation*.
    NeurIPS 2014. https://arxiv.org/abs/1404.0736
"""
from __future__ import annotations

import torch
from torch import nn

from .svd import truncated_svd

__all__ = ["LowRankLinear"]


class LowRankLinear(nn.Module):
    """Two linear layers in sequence: ``project`` (``Vᵀ``, no bias) then ``expand`` (``U·S``, with the bias).

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        rank: width of the inner representation.
        bias: whether ``expand`` has a bias (the dense layer's bias, unchanged).
        device: where the parameters are created.
        dtype: dtype of the parameters.

    Attributes:
        project: ``nn.Linear(in_features, rank, bias=False)``, weight ``V_rᵀ``.
        expand: ``nn.Linear(rank, out_features, bias=bias)``, weight ``U_r·S_r``.

    Example:
        >>> dense = nn.Linear(64, 32)
        >>> low = LowRankLinear.from_linear(dense, rank=8)
        >>> low(torch.randn(2, 64)).shape
        torch.Size([2, 32])
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.project = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.expand = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int) -> LowRankLinear:
        """The rank-``rank`` truncated SVD of ``linear``, on its device and in its dtype, bias copied.

        Args:
            linear: the dense layer (left unchanged).
            rank: ``1 <= rank <= min(in_features, out_features)``; at the full rank the output equals
                ``linear``'s up to rounding.

        Raises:
            ArgumentError: ``rank`` is out of range.
        """
        weight = linear.weight
        svd = truncated_svd(weight, rank)
        low = cls(linear.in_features, linear.out_features, rank, bias=linear.bias is not None,
                  device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            low.project.weight.copy_(svd.vh)
            low.expand.weight.copy_(svd.u * svd.s)
            if linear.bias is not None:
                low.expand.bias.copy_(linear.bias)
        return low

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.project(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"
