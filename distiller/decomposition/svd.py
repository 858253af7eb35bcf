"""Truncated singular value decomposition of a weight matrix and rank selection by retained energy.

By the Eckart-Young theorem, keeping the ``r`` largest singular values gives the best rank-``r``
approximation of a matrix in the Frobenius and spectral norms. Xue et al. (2013) and Denton et al. (2014)
use it to replace a dense layer by two thinner ones.

References:
    J. Xue, J. Li, Y. Gong. *Restructuring of Deep Neural Network Acoustic Models with Singular Value
    Decomposition*. Interspeech 2013.
    E. Denton, W. Zaremba, J. Bruna, Y. LeCun, R. Fergus. *Exploiting Linear Structure Within Convolutional
    Networks for Efficient Evaluation*. NeurIPS 2014. https://arxiv.org/abs/1404.0736
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import ArgumentError

__all__ = ["TruncatedSVD", "truncated_svd", "rank_for_energy"]


class TruncatedSVD(NamedTuple):
    """The ``rank`` leading singular triplets of a ``(m, n)`` matrix ``W ≈ u @ diag(s) @ vh``.

    Attributes:
        u: ``(m, rank)`` left singular vectors.
        s: ``(rank,)`` singular values, largest first.
        vh: ``(rank, n)`` right singular vectors, transposed.
    """
    u: torch.Tensor
    s: torch.Tensor
    vh: torch.Tensor

    def reconstruct(self) -> torch.Tensor:
        """The rank-``r`` approximation ``u @ diag(s) @ vh``."""
        return (self.u * self.s) @ self.vh


def _check_matrix(weight: torch.Tensor) -> None:
    if weight.dim() != 2:
        raise ArgumentError(f"truncated SVD needs a 2-D weight matrix; got a tensor of shape {tuple(weight.shape)}",
                            argument="weight")


def truncated_svd(weight: torch.Tensor, rank: int) -> TruncatedSVD:
    """The best rank-``rank`` factorisation of ``weight`` (Eckart-Young), as in Xue et al. (2013).

    The decomposition is computed in float32 (or float64 for float64 weights) and returned in that precision.

    Args:
        weight: a 2-D tensor, e.g. a ``nn.Linear`` weight of shape ``(out_features, in_features)``.
        rank: how many singular values to keep, ``1 <= rank <= min(weight.shape)``; at the full rank the
            product reconstructs ``weight`` exactly (up to rounding).

    Returns:
        the leading ``rank`` singular triplets.

    Raises:
        ArgumentError: ``weight`` is not 2-D, or ``rank`` is out of range.

    Example:
        >>> w = torch.randn(6, 4)
        >>> svd = truncated_svd(w, 4)
        >>> torch.allclose(svd.reconstruct(), w, atol=1e-5)
        True
    """
    _check_matrix(weight)
    full_rank = min(weight.shape)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= full_rank:
        raise ArgumentError(f"truncated SVD: rank {rank!r} is out of range for a {tuple(weight.shape)} matrix; "
                            f"give an integer from 1 to {full_rank}", argument="rank")
    matrix = weight.detach()
    if matrix.dtype != torch.float64:
        matrix = matrix.float()
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    return TruncatedSVD(u[:, :rank], s[:rank], vh[:rank])


def rank_for_energy(weight: torch.Tensor, energy: float) -> int:
    """The smallest rank whose singular values keep at least ``energy`` of ``weight``'s squared Frobenius norm.

    The energy of a singular value ``s_i`` is ``s_i ** 2``; the rank-``r`` approximation keeps
    ``sum(s[:r] ** 2) / sum(s ** 2)`` of it.

    Args:
        weight: a 2-D tensor.
        energy: the fraction to keep, ``0 < energy <= 1``.

    Returns:
        a rank from 1 to ``min(weight.shape)``.

    Raises:
        ArgumentError: ``weight`` is not 2-D, or ``energy`` is outside ``(0, 1]``.

    Example:
        >>> rank_for_energy(torch.diag(torch.tensor([3.0, 1.0])), 0.9)
        1
    """
    _check_matrix(weight)
    if isinstance(energy, bool) or not isinstance(energy, (int, float)) or not 0 < energy <= 1:
        raise ArgumentError(f"energy {energy!r} is not a fraction in (0, 1]: give the share of squared singular "
                            "values to keep, e.g. 0.9", argument="energy")
    squares = torch.linalg.svdvals(weight.detach().double()) ** 2
    if not squares.sum() > 0:
        return 1  # a zero matrix: any rank keeps all of its (zero) energy
    kept = torch.cumsum(squares, 0) / squares.sum()
    # a tolerance so that energy=1.0 is reached despite rounding in the cumulative sum
    rank = int(torch.searchsorted(kept, torch.tensor(energy - 1e-12, dtype=torch.float64))) + 1
    return min(rank, squares.numel())
