"""Filter pruning ranked by the activations the filters produce.

* :class:`ActivationAPoZRankedFilterPruner`: prunes the filters whose rectified outputs are most often
  zero (Average Percentage of Zeros; Hu et al. 2016, "Network Trimming: A Data-Driven Neuron Pruning
  Approach towards Efficient Deep Architectures", arXiv:1607.03250).
* :class:`ActivationMeanRankedFilterPruner`: prunes the filters with the smallest mean activation
  (Molchanov et al. 2016, "Pruning Convolutional Neural Networks for Resource Efficient Inference").

The statistics come from forward hooks (:class:`~distiller.pruning.activation_stats.ActivationStatsCollector`)
installed on the model when the pruner is built from YAML (the schedule passes ``model``) or, otherwise,
at its first mask. Each ranking uses the forward passes (training and validation) seen since the previous
ranking, so the policy must leave some batches between the hooks' installation and the first non-zero
target.
"""
import math

from ..errors import ArgumentError
from ..registry import register_pruner
from .activation_stats import ActivationStatsCollector
from .ranked import RankedStructureParameterPruner


def owning_module_name(param_name):
    """``'layer1.0.conv1.weight'`` -> ``'layer1.0.conv1'``."""
    return param_name.rsplit(".", 1)[0] if "." in param_name else ""


class ActivationRankedFilterPruner(RankedStructureParameterPruner):
    """Base of the activation-ranked filter pruners: subclasses set ``statistic`` and turn it into importance.

    Args:
        name, group_type, desired_sparsity, weights, group_dependency, kwargs, noise, group_size,
        rounding_fn, logging_fn: as :class:`~distiller.pruning.L1RankedStructureParameterPruner`
            (``group_type`` must be ``'Filters'``/``'3D'``).
        model: the model whose activations are watched (given automatically by the YAML schedule).
    """

    statistic = None

    def __init__(self, name, group_type, desired_sparsity, weights, group_dependency=None, kwargs=None,
                 noise=0.0, group_size=1, rounding_fn=math.floor, logging_fn=None, model=None):
        super().__init__(name, group_type, desired_sparsity, weights, group_dependency, kwargs, noise,
                         group_size, rounding_fn, logging_fn)
        if self.group_type != "Filters":
            raise ArgumentError(f"{name}: activation ranking applies to output filters: use group_type 'Filters' "
                                f"(or '3D'), not {group_type!r}")
        self.collector = None
        self._saved_stats = {}
        if model is not None:
            self.attach(model)

    def attach(self, model):
        """Installs the forward hooks that collect statistics for the targeted weights (once)."""
        if self.collector is None:
            modules = [owning_module_name(name) for name, _ in self._targeted_params(model)]
            self.collector = ActivationStatsCollector(model, modules, self.statistic)
            self.collector.load_state_dict(self._saved_stats)

    def structure_keep_mask(self, param, param_name, fraction, model):
        self.attach(model)
        return super().structure_keep_mask(param, param_name, fraction, model)

    def collected(self, param, param_name):
        """The per-filter statistic of the module owning ``param_name``, on ``param``'s device."""
        try:
            stat = self.collector.statistic_of(owning_module_name(param_name))
        except RuntimeError as err:
            raise RuntimeError(f"{self.name}: {err}") from None
        if stat.numel() != param.shape[0]:
            raise ArgumentError(f"{self.name}: '{param_name}' has {param.shape[0]} filters but its module's output "
                                f"has {stat.numel()} channels; activation ranking needs the weight's own module")
        return stat.to(param.device)

    def state_dict(self):
        return {"activation_stats": self.collector.state_dict() if self.collector else dict(self._saved_stats)}

    def load_state_dict(self, state):
        self._saved_stats = dict(state.get("activation_stats", {}))
        if self.collector is not None:
            self.collector.load_state_dict(self._saved_stats)


@register_pruner
class ActivationAPoZRankedFilterPruner(ActivationRankedFilterPruner):
    """Prunes the filters with the highest Average Percentage of Zeros in their rectified outputs
    (Hu et al. 2016, "Network Trimming").

    YAML::

        pruners:
          apoz_pruner:
            class: ActivationAPoZRankedFilterPruner
            group_type: Filters
            desired_sparsity: 0.3
            weights: [layer1.0.conv1.weight, layer1.1.conv1.weight]

        policies:   # start after some training, so that activations were seen
          - pruner: {instance_name: apoz_pruner}
            epochs: [2]
    """

    statistic = "apoz"

    def importance(self, param, param_name, model):
        return 1.0 - self.collected(param, param_name)


@register_pruner
class ActivationMeanRankedFilterPruner(ActivationRankedFilterPruner):
    """Prunes the filters with the smallest mean rectified activation (Molchanov et al. 2016).

    YAML::

        pruners:
          mean_act_pruner:
            class: ActivationMeanRankedFilterPruner
            group_type: Filters
            desired_sparsity: 0.3
            weights: [layer1.0.conv1.weight]
    """

    statistic = "mean"

    def importance(self, param, param_name, model):
        return self.collected(param, param_name)
