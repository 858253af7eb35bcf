"""Pruning to an exact sparsity level per parameter."""
from ..registry import register_pruner
from .magnitude import PerParameterValuePruner
from .masks import create_mask_level_criterion


@register_pruner
class SparsityLevelParameterPruner(PerParameterValuePruner):
    """Prunes the smallest-magnitude elements of each parameter until it reaches its sparsity level.

    Exactly ``floor(level * numel)`` elements are pruned (see :func:`create_mask_level_criterion`), so the
    result does not depend on the weights' scale, unlike a magnitude threshold.

    Args:
        name: instance name.
        levels: ``{parameter name or regex or '*': sparsity in [0, 1)}``.

    YAML::

        my_pruner:
          class: SparsityLevelParameterPruner
          levels:
            'conv1.weight': 0.5
            'fc.weight': 0.8
    """

    def __init__(self, name, levels):
        super().__init__(name, "levels", levels, minimum=0.0, below=1.0)

    @property
    def levels(self):
        return self.values

    @levels.setter
    def levels(self, levels):
        # PruningPolicy's ``levels`` argument overrides the pruner's levels through this setter.
        self.values = self.checked_values(levels)

    def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
        zeros_mask_dict[param_name].mask = create_mask_level_criterion(param, self.value_for(param_name))
