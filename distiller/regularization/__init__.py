"""Regularizers: loss terms (and optional thresholding) that induce element-wise or structured sparsity.

Importing this package registers every regularizer under its class name, for YAML ``class:`` lookups.
"""
from .base import Regularizer
from .drop_filter import DropFilterRegularizer, drops_only_in_training
from .group_lasso import GROUP_TYPES, GroupLassoRegularizer, GroupLassoType, group_l2_norms
from .group_variance import GroupVarianceRegularizer
from .l1 import L1Regularizer

__all__ = [
    "Regularizer",
    "L1Regularizer",
    "GroupLassoRegularizer",
    "GroupVarianceRegularizer",
    "DropFilterRegularizer",
    "drops_only_in_training",
    "group_l2_norms",
    "GROUP_TYPES",
    "GroupLassoType",
]
