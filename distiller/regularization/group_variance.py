"""Group variance regularization: spreads the group norms apart so that weak groups can be removed.

After Torfi et al. 2018, "Attention-Based Guided Structured Sparsity of Deep Neural Networks"
(arXiv:1802.09902), which adds to group lasso a term rewarding a large variance of the group norms, so a
few groups carry the layer and the rest shrink. Here the term is ``1 / (1 + CV^2)`` where
``CV^2 = Var(n) / mean(n)^2`` is the squared coefficient of variation of the group L2 norms ``n``: it is
positive, bounded by 1, falls as the norms spread apart, and is scale-free (it cannot be lowered by
merely growing the weights).
"""
from __future__ import annotations

import torch

from ..registry import register_regularizer
from .group_lasso import GroupLassoRegularizer

_EPS = 1e-12


@register_regularizer
class GroupVarianceRegularizer(GroupLassoRegularizer):
    """Adds ``strength / (1 + Var(n) / mean(n)^2)`` over the group L2 norms ``n`` of each weight.

    Arguments, group types and thresholding as :class:`~distiller.regularization.GroupLassoRegularizer`
    (a ``'4D'`` part has a single group, hence no variance, and adds a constant ``strength``). Usually
    combined with a group lasso (or thresholding) that then removes the weakened groups.

    YAML::

        filter_variance:
          class: GroupVarianceRegularizer
          reg_regims:
            conv1.weight: [0.01, Filters]
            conv2.weight: [0.01, Channels]
    """

    def group_term(self, norms: torch.Tensor) -> torch.Tensor:
        if norms.numel() < 2:
            return norms.sum() * 0.0 + 1.0
        return 1.0 / (1.0 + norms.var() / (norms.mean().square() + _EPS))
