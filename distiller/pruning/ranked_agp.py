"""AGP-scheduled structure pruning: the AGP rate (Zhu & Gupta 2017) with a ranked structure pruner.

Each class pairs :class:`~distiller.pruning.AutomatedGradualPrunerBase` (how much to prune at each step)
with a ranked pruner from ``ranked``, ``activation_ranked`` or ``random_ranked`` (which structures), so
the ranking and masking logic exists once. YAML (all share these arguments)::

    pruners:
      filter_pruner_agp:
        class: L1RankedStructureParameterPruner_AGP
        initial_sparsity: 0.05
        final_sparsity: 0.50
        group_type: Filters
        weights: [layer2.0.conv1.weight, layer2.1.conv1.weight, layer2.2.conv1.weight]
        # group_dependency: Leader       # optional
        # group_size: 4                  # optional

    policies:
      - pruner: {instance_name: filter_pruner_agp}
        starting_epoch: 0
        ending_epoch: 20
        frequency: 2
"""
import math

from ..registry import register_pruner
from .activation_ranked import ActivationAPoZRankedFilterPruner, ActivationMeanRankedFilterPruner
from .agp import AutomatedGradualPrunerBase
from .random_ranked import BernoulliFilterPruner, RandomRankedFilterPruner
from .ranked import GradientRankedFilterPruner, L1RankedStructureParameterPruner, L2RankedStructureParameterPruner


class StructuredAGP(AutomatedGradualPrunerBase):
    """AGP schedule whose structures are chosen by a ``ranker_class`` pruner.

    Args:
        name: instance name.
        initial_sparsity, final_sparsity: AGP structure sparsity range, in [0, 1).
        group_type, weights, group_dependency, kwargs, noise, group_size, rounding_fn: as the ranked
            pruner (:class:`~distiller.pruning.L1RankedStructureParameterPruner`).
    """

    ranker_class = None

    def __init__(self, name, initial_sparsity, final_sparsity, group_type, weights, group_dependency=None,
                 kwargs=None, noise=0.0, group_size=1, rounding_fn=math.floor):
        super().__init__(name, initial_sparsity, final_sparsity, weights)
        self.ranker = self.ranker_class(name, group_type, self.final_sparsity, weights, group_dependency, kwargs,
                                        noise, group_size, rounding_fn)

    def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
        self.ranker.prune_to_target_sparsity(param, param_name, zeros_mask_dict, self.compute_target_sparsity(meta),
                                             meta["model"], step=meta.get("current_epoch"))

    def prune_to_target_sparsity(self, param, param_name, zeros_mask_dict, target_sparsity, model):
        self.ranker.prune_to_target_sparsity(param, param_name, zeros_mask_dict, target_sparsity, model)

    def state_dict(self):
        return self.ranker.state_dict()

    def load_state_dict(self, state):
        self.ranker.load_state_dict(state)

    def __repr__(self):
        return (f"{type(self).__name__}(name={self.name!r}, group_type={self.ranker.group_type!r}, "
                f"initial_sparsity={self.initial_sparsity}, final_sparsity={self.final_sparsity})")


@register_pruner
class L1RankedStructureParameterPruner_AGP(StructuredAGP):  # noqa: N801 - Distiller's YAML name
    """AGP over structures ranked by L1 norm (see the module docstring for all arguments).

    YAML::

        pruners:
          l1_filters_agp:
            class: L1RankedStructureParameterPruner_AGP
            initial_sparsity: 0.05
            final_sparsity: 0.50
            group_type: Filters
            weights: [layer1.0.conv1.weight, layer1.1.conv1.weight]
    """

    ranker_class = L1RankedStructureParameterPruner


@register_pruner
class L2RankedStructureParameterPruner_AGP(StructuredAGP):  # noqa: N801
    """AGP over structures ranked by L2 norm.

    YAML::

        pruners:
          l2_filters_agp:
            class: L2RankedStructureParameterPruner_AGP
            initial_sparsity: 0.05
            final_sparsity: 0.50
            group_type: Filters
            weights: [layer1.0.conv1.weight, layer1.1.conv1.weight]
    """

    ranker_class = L2RankedStructureParameterPruner


@register_pruner
class GradientRankedFilterPruner_AGP(StructuredAGP):  # noqa: N801
    """AGP over structures ranked by the Taylor term ``|w * grad|`` (needs gradients at pruning time).

    YAML::

        pruners:
          taylor_filters_agp:
            class: GradientRankedFilterPruner_AGP
            initial_sparsity: 0.05
            final_sparsity: 0.50
            group_type: Filters
            weights: [layer1.0.conv1.weight, layer1.1.conv1.weight]
    """

    ranker_class = GradientRankedFilterPruner


@register_pruner
class RandomRankedFilterPruner_AGP(StructuredAGP):  # noqa: N801
    """AGP over structures chosen at random at each step.

    YAML::

        pruners:
          random_filters_agp:
            class: RandomRankedFilterPruner_AGP
            initial_sparsity: 0.05
            final_sparsity: 0.50
            group_type: Filters
            weights: [layer1.0.conv1.weight, layer1.1.conv1.weight]
    """

    ranker_class = RandomRankedFilterPruner


@register_pruner
class BernoulliFilterPruner_AGP(StructuredAGP):  # noqa: N801
    """AGP drop probability; each structure is dropped independently (DropFilter-style when scheduled
    every mini-batch with soft masks, see ``examples/drop_filter/``).

    YAML::

        pruners:
          drop_filters_agp:
            class: BernoulliFilterPruner_AGP
            initial_sparsity: 0.05
            final_sparsity: 0.50
            group_type: Filters
            weights: [layer1.0.conv1.weight, layer1.1.conv1.weight]
    """

    ranker_class = BernoulliFilterPruner


class ActivationRankedAGP(StructuredAGP):
    """AGP over activation-ranked filters; ``model`` (given by the YAML schedule) lets the hooks collect
    statistics from the first training batch."""

    def __init__(self, name, initial_sparsity, final_sparsity, group_type, weights, group_dependency=None,
                 kwargs=None, noise=0.0, group_size=1, rounding_fn=math.floor, model=None):
        super().__init__(name, initial_sparsity, final_sparsity, group_type, weights, group_dependency, kwargs,
                         noise, group_size, rounding_fn)
        if model is not None:
            self.ranker.attach(model)


@register_pruner
class ActivationAPoZRankedFilterPruner_AGP(ActivationRankedAGP):  # noqa: N801
    """AGP over filters ranked by Average Percentage of Zeros (Hu et al. 2016, "Network Trimming").

    YAML::

        pruners:
          apoz_filters_agp:
            class: ActivationAPoZRankedFilterPruner_AGP
            initial_sparsity: 0.05
            final_sparsity: 0.50
            group_type: Filters
            weights: [layer1.0.conv1.weight, layer1.1.conv1.weight]
    """

    ranker_class = ActivationAPoZRankedFilterPruner


@register_pruner
class ActivationMeanRankedFilterPruner_AGP(ActivationRankedAGP):  # noqa: N801
    """AGP over filters ranked by mean activation (Molchanov et al. 2016).

    YAML::

        pruners:
          mean_act_filters_agp:
            class: ActivationMeanRankedFilterPruner_AGP
            initial_sparsity: 0.05
            final_sparsity: 0.50
            group_type: Filters
            weights: [layer1.0.conv1.weight, layer1.1.conv1.weight]
    """

    ranker_class = ActivationMeanRankedFilterPruner
