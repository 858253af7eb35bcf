"""Pruners (schedulable mask makers) and element-wise mask criteria.

Importing this package registers every pruner under its class name, for YAML ``class:`` lookups.
"""
from .agp import AutomatedGradualPruner, AutomatedGradualPrunerBase, agp_target_sparsity
from .base import ParameterPruner
from .level import SparsityLevelParameterPruner
from .magnitude import MagnitudeParameterPruner
from .masks import (create_mask_level_criterion, create_mask_sensitivity_criterion,
                    create_mask_threshold_criterion)
from .rnn import BaiduRNNPruner, baidu_rnn_threshold
from .sensitivity import SensitivityPruner
from .splicing import SplicingPruner

__all__ = [
    "ParameterPruner",
    "AutomatedGradualPrunerBase",
    "agp_target_sparsity",
    "AutomatedGradualPruner",
    "MagnitudeParameterPruner",
    "SparsityLevelParameterPruner",
    "SensitivityPruner",
    "SplicingPruner",
    "BaiduRNNPruner",
    "baidu_rnn_threshold",
    "create_mask_threshold_criterion",
    "create_mask_level_criterion",
    "create_mask_sensitivity_criterion",
]
