"""Pruners (schedulable mask makers) and element-wise mask criteria.

Importing this package registers every pruner under its class name, for YAML ``class:`` lookups.
"""
from .agp import AgpPruningRate, AutomatedGradualPruner, AutomatedGradualPrunerBase, agp_target_sparsity
from .base import ParameterPruner
from .level import SparsityLevelParameterPruner
from .magnitude import MagnitudeParameterPruner
from .masks import (create_mask_level_criterion, create_mask_sensitivity_criterion,
                    create_mask_threshold_criterion, mask_tensor)
from .rnn import BaiduRNNPruner, baidu_rnn_threshold
from .sensitivity import SensitivityPruner
from .splicing import SplicingPruner
from .activation_ranked import (ActivationAPoZRankedFilterPruner, ActivationMeanRankedFilterPruner,
                                ActivationRankedFilterPruner)
from .activation_stats import ActivationStatsCollector
from .fm_reconstruction import FMReconstructionChannelPruner
from .greedy_filter_pruning import add_greedy_pruner_args, greedy_pruner
from .importance import (IMPORTANCES, ActivationImportance, BernoulliImportance, FunctionImportance, Importance,
                         LpImportance, RandomImportance, Structures, TaylorImportance, register_importance)
from .random_ranked import BernoulliFilterPruner, RandomLevelStructureParameterPruner, RandomRankedFilterPruner
from .ranked import (GradientRankedFilterPruner, L1RankedStructureParameterPruner,
                     L2RankedStructureParameterPruner, RankedStructureParameterPruner)
from .ranked_agp import (ActivationAPoZRankedFilterPruner_AGP, ActivationMeanRankedFilterPruner_AGP,
                         BernoulliFilterPruner_AGP, GradientRankedFilterPruner_AGP,
                         L1RankedStructureParameterPruner_AGP, L2RankedStructureParameterPruner_AGP,
                         RandomRankedFilterPruner_AGP, StructuredAGP)
from .structure import StructureParameterPruner
from .nm import NMStructurePruner, is_nm_sparse, nm_group_view, nm_mask
from .semi_structured import SemiStructuredLayer, semi_structured_ineligibility, to_semi_structured

__all__ = [
    "ParameterPruner",
    "AutomatedGradualPrunerBase",
    "AgpPruningRate",
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
    "mask_tensor",
    # structure pruning (ranked, activation-ranked, random, threshold, reconstruction, AGP)
    "RankedStructureParameterPruner",
    "L1RankedStructureParameterPruner",
    "L2RankedStructureParameterPruner",
    "GradientRankedFilterPruner",
    "ActivationRankedFilterPruner",
    "ActivationAPoZRankedFilterPruner",
    "ActivationMeanRankedFilterPruner",
    "ActivationStatsCollector",
    "RandomRankedFilterPruner",
    "BernoulliFilterPruner",
    "RandomLevelStructureParameterPruner",
    "StructureParameterPruner",
    # N:M (2:4) semi-structured sparsity and its export to sparse tensor cores
    "NMStructurePruner",
    "nm_mask",
    "nm_group_view",
    "is_nm_sparse",
    "to_semi_structured",
    "semi_structured_ineligibility",
    "SemiStructuredLayer",
    "FMReconstructionChannelPruner",
    # greedy filter pruning (a search with thinning, not a schedulable pruner)
    "greedy_pruner",
    "add_greedy_pruner_args",
    "StructuredAGP",
    # importance criteria of the ranked structure pruners
    "Importance",
    "Structures",
    "FunctionImportance",
    "LpImportance",
    "TaylorImportance",
    "RandomImportance",
    "BernoulliImportance",
    "ActivationImportance",
    "IMPORTANCES",
    "register_importance",
    "L1RankedStructureParameterPruner_AGP",
    "L2RankedStructureParameterPruner_AGP",
    "GradientRankedFilterPruner_AGP",
    "RandomRankedFilterPruner_AGP",
    "BernoulliFilterPruner_AGP",
    "ActivationAPoZRankedFilterPruner_AGP",
    "ActivationMeanRankedFilterPruner_AGP",
]
