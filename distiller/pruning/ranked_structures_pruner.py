"""Distiller's module path for the ranked structure pruners; they now live in :mod:`distiller.pruning.ranked`,
``activation_ranked``, ``random_ranked`` and ``fm_reconstruction``."""
from .activation_ranked import (ActivationAPoZRankedFilterPruner, ActivationMeanRankedFilterPruner,
                                ActivationRankedFilterPruner)
from .fm_reconstruction import FMReconstructionChannelPruner
from .random_ranked import BernoulliFilterPruner, RandomLevelStructureParameterPruner, RandomRankedFilterPruner
from .ranked import (GradientRankedFilterPruner, L1RankedStructureParameterPruner, L2RankedStructureParameterPruner,
                     RankedStructureParameterPruner)

__all__ = ["RankedStructureParameterPruner", "L1RankedStructureParameterPruner", "L2RankedStructureParameterPruner",
           "GradientRankedFilterPruner", "ActivationRankedFilterPruner", "ActivationAPoZRankedFilterPruner",
           "ActivationMeanRankedFilterPruner", "RandomRankedFilterPruner", "BernoulliFilterPruner",
           "RandomLevelStructureParameterPruner", "FMReconstructionChannelPruner"]
