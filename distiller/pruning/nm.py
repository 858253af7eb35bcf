"""N:M semi-structured sparsity (2:4 for sparse tensor cores), reached gradually.

In an N:M sparse weight every group of M consecutive weights along the input (reduction) dimension keeps at
most N non-zeros. NVIDIA's Ampere and later GPUs multiply 2:4 sparse fp16/bf16/int8 matrices on sparse
tensor cores (Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks", arXiv:2104.08378; NVIDIA's
Automatic SParsity library, ASP). Groups run along a Linear weight's rows (``[out, in]``) and along the
input channels of a conv weight (``[out, in, kh, kw]``, as ASP groups them), so ``in`` must divide by M.

The ramp: ASP prunes a trained dense network to 2:4 in one step and fine-tunes. :class:`NMStructurePruner`
instead makes a growing fraction of the M-groups N:M sparse along the AGP curve (Zhu & Gupta 2017), from
``initial_fraction`` to all of them at the policy's last pruning epoch. At each step the groups chosen are
those whose N:M pruning removes the least magnitude; groups made N:M earlier already hold zeros where they
were pruned, so they cost nothing and stay chosen. The final weight is exactly N:M sparse (overall
sparsity ``1 - N/M``).
"""
from __future__ import annotations

from typing import Annotated

import annotated_types
import torch

from ..errors import ArgumentError
from ..registry import register_pruner
from ..spec import Fraction, validated
from .agp import agp_target_sparsity
from .base import MaskDict, Meta, ParameterPruner, WeightNames
from .masks import pruned_element_count

__all__ = ["nm_group_view", "nm_mask", "is_nm_sparse", "NMStructurePruner"]

#: N or M of an N:M pattern: an int >= 1.
GroupSize = Annotated[int, annotated_types.Ge(1)]


def _check_shape(weight: torch.Tensor, m: int, name: str) -> None:
    if weight.dim() not in (2, 4):
        raise ArgumentError(f"'{name}' has shape {tuple(weight.shape)}: N:M sparsity applies to Linear [out, in] "
                            "and conv [out, in, kh, kw] weights; remove it from the pruner's weights")
    if weight.shape[1] % m:
        raise ArgumentError(f"'{name}' has {weight.shape[1]} input features/channels, not a multiple of m={m}: "
                            "N:M groups cannot tile it; remove it from the pruner's weights")


def nm_group_view(weight: torch.Tensor, m: int, name: str = "weight") -> torch.Tensor:
    """``weight`` as ``[groups, m]``: each row is one group of M consecutive input features (Linear) or input
    channels at one kernel position (conv).

    Raises:
        ArgumentError: not a 2D/4D weight, or its input dimension does not divide by ``m``.
    """
    _check_shape(weight, m, name)
    if weight.dim() == 4:
        weight = weight.permute(0, 2, 3, 1)            # [out, kh, kw, in]: input channels last
    return weight.reshape(-1, m)


def _from_group_view(groups: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if len(shape) == 4:
        out, in_channels, kh, kw = shape
        return groups.reshape(out, kh, kw, in_channels).permute(0, 3, 1, 2).contiguous()
    return groups.reshape(shape)


def nm_mask(weight: torch.Tensor, n: int, m: int, fraction: float = 1.0, name: str = "weight") -> torch.Tensor:
    """Bool mask making ``floor(fraction * groups)`` of ``weight``'s M-groups N:M sparse (the N largest
    magnitudes of each kept), chosen where that removes the least magnitude; the other groups stay dense.

    Args:
        weight: Linear or conv weight (see :func:`nm_group_view`).
        n, m: keep ``n`` of every ``m`` (``n < m``).
        fraction: the fraction of groups made N:M sparse, in [0, 1].
        name: the parameter's name, for error messages.
    Raises:
        ArgumentError: ``n >= m``, a fraction outside [0, 1], or a weight that N:M groups cannot tile.
    """
    if not 1 <= n < m:
        raise ArgumentError(f"N:M sparsity needs 1 <= n < m, got n={n}, m={m}")
    with torch.no_grad():
        magnitudes = nm_group_view(weight.detach(), m, name).abs()
        kept = torch.topk(magnitudes, n, dim=1).indices
        nm = torch.zeros_like(magnitudes, dtype=torch.bool).scatter_(1, kept, True)
        sparse_groups = pruned_element_count(magnitudes.shape[0], fraction)
        if sparse_groups < magnitudes.shape[0]:
            cost = magnitudes.masked_fill(nm, 0).sum(dim=1)
            chosen = torch.zeros(magnitudes.shape[0], dtype=torch.bool, device=weight.device)
            chosen[torch.topk(cost, sparse_groups, largest=False).indices] = True
            nm |= ~chosen.unsqueeze(1)
        return _from_group_view(nm, weight.shape)


def is_nm_sparse(weight: torch.Tensor, n: int, m: int) -> bool:
    """Whether every M-group of ``weight`` (see :func:`nm_group_view`) holds at most ``n`` non-zeros; False for
    a weight N:M groups cannot tile."""
    if weight.dim() not in (2, 4) or weight.shape[1] % m:
        return False
    return bool(((nm_group_view(weight.detach(), m) != 0).sum(dim=1) <= n).all())


@register_pruner
class NMStructurePruner(ParameterPruner):
    """N:M semi-structured pruning (2:4 by default) with an AGP ramp over the fraction of N:M-sparse groups.

    Mishra et al. 2021 (arXiv:2104.08378), NVIDIA ASP; ramp of Zhu & Gupta 2017 (arXiv:1710.01878). At each
    pruning epoch :func:`~distiller.pruning.agp_target_sparsity` gives the fraction of each weight's M-groups
    that are N:M sparse (from ``initial_fraction`` to 1), and :func:`nm_mask` picks the cheapest groups; from
    the last pruning epoch on every group is N:M sparse. A policy with a single pruning epoch prunes all groups
    at once (ASP's one-shot recipe). Export with :func:`distiller.pruning.to_semi_structured` on a GPU.

    Args:
        name: instance name.
        weights: Linear / conv weight names or regular expressions; their input dimension must divide by m.
        n: weights kept per group.
        m: group size (along the input features / channels).
        initial_fraction: fraction of groups N:M sparse at ``starting_epoch``, in [0, 1).

    YAML::

        two_four:
          class: NMStructurePruner
          n: 2
          m: 4
          initial_fraction: 0.0
          weights: [conv2.weight, fc.weight]

    Scheduled over epochs 0-9 (all groups 2:4 sparse from epoch 9 on)::

        policies:
          - pruner:
              instance_name: two_four
            starting_epoch: 0
            ending_epoch: 10
            frequency: 1
    """

    @validated
    def __init__(self, name: str, weights: WeightNames, n: GroupSize = 2, m: GroupSize = 4,
                 initial_fraction: Fraction = 0.0) -> None:
        super().__init__(name)
        if not n < m:
            raise ArgumentError(f"{name}: n={n} must be smaller than m={m}", argument="n")
        self.weights = list(weights)
        self.n, self.m, self.initial_fraction = n, m, initial_fraction

    def targets(self) -> list[str]:
        return self.weights

    def sparse_group_fraction(self, meta: Meta) -> float:
        """The fraction of groups that are N:M sparse at ``meta['current_epoch']``: the AGP curve from
        ``initial_fraction`` to 1, or 1 for a policy with a single pruning epoch."""
        start, end, frequency = meta["starting_epoch"], meta["ending_epoch"], meta["frequency"] or 1
        if end is None or (end - start - 1) // frequency <= 0:
            return 1.0
        return agp_target_sparsity(self.initial_fraction, 1.0, start, end, frequency, meta["current_epoch"])

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        zeros_mask_dict[param_name].mask = nm_mask(param, self.n, self.m, self.sparse_group_fraction(meta),
                                                   param_name)

    def __repr__(self) -> str:
        return f"NMStructurePruner(name={self.name!r}, n={self.n}, m={self.m})"
