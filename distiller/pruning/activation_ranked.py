"""Filter pruning ranked by the activations the filters produce.

* :class:`ActivationAPoZRankedFilterPruner`: prunes the filters whose rectified outputs are most often
  zero (Average Percentage of Zeros; Hu et al. 2016, "Network Trimming: A Data-Driven Neuron Pruning
  Approach towards Efficient Deep Architectures", arXiv:1607.03250).
* :class:`ActivationMeanRankedFilterPruner`: prunes the filters with the smallest mean activation
  (Molchanov et al. 2016, "Pruning Convolutional Neural Networks for Resource Efficient Inference").

The statistics come from forward hooks (:class:`~distiller.pruning.importance.ActivationImportance`,
:class:`~distiller.pruning.activation_stats.ActivationStatsCollector`) installed on the model when the
pruner is built from YAML (the schedule passes ``model``) or, otherwise, at its first mask. Each ranking
uses the forward passes (training and validation) seen since the previous ranking, so the policy must leave
some batches between the hooks' installation and the first non-zero target.
"""
from ..registry import register_pruner
from .importance import owning_module_name
from .ranked import RankedStructureParameterPruner

__all__ = ["ActivationRankedFilterPruner", "ActivationAPoZRankedFilterPruner", "ActivationMeanRankedFilterPruner",
           "owning_module_name"]


class ActivationRankedFilterPruner(RankedStructureParameterPruner):
    """Base of the activation-ranked filter pruners (``group_type`` must be ``'Filters'``/``'3D'``); arguments
    as :class:`~distiller.pruning.RankedStructureParameterPruner`."""


@register_pruner
class ActivationAPoZRankedFilterPruner(ActivationRankedFilterPruner):
    """Prunes the filters with the highest Average Percentage of Zeros in their rectified outputs
    (Hu et al. 2016, "Network Trimming").

    YAML::

        apoz_pruner:
          class: ActivationAPoZRankedFilterPruner
          group_type: Filters
          desired_sparsity: 0.3
          weights: [conv1.weight, conv2.weight]

    Scheduled after some training, so that activations were seen::

        policies:
          - pruner: {instance_name: apoz_pruner}
            epochs: [2]
    """

    default_importance = "APoZ"


@register_pruner
class ActivationMeanRankedFilterPruner(ActivationRankedFilterPruner):
    """Prunes the filters with the smallest mean rectified activation (Molchanov et al. 2016).

    YAML::

        mean_act_pruner:
          class: ActivationMeanRankedFilterPruner
          group_type: Filters
          desired_sparsity: 0.3
          weights: [conv1.weight, conv2.weight]
    """

    default_importance = "MeanActivation"
