"""Threshold-based structure pruning: zero every structure whose magnitude is below a threshold.

The structured counterpart of magnitude pruning; with group-lasso training (Wen et al. 2016, "Learning
Structured Sparsity in Deep Neural Networks") the groups the regularizer drove to near zero are removed.
"""
from ..errors import ArgumentError
from ..norms import GROUP_TYPE_ALIASES
from ..registry import register_pruner
from ..thresholding import THRESHOLD_CRITERIA, group_threshold_mask, parse_regims
from ..utils import pattern_lookup
from .base import ParameterPruner


@register_pruner
class StructureParameterPruner(ParameterPruner):
    """Zeroes the structures whose ``threshold_criteria`` magnitude is at or below their threshold.

    Args:
        name: instance name.
        model: the model (given automatically by the YAML schedule).
        reg_regims: parameter name / regex -> ``[threshold, group_type]`` with ``group_type`` in
            ``'2D'``, ``'Rows'``, ``'Cols'``, ``'3D'``/``'Filters'``, ``'4D'``, ``'Channels'``.
        threshold_criteria: ``'Mean_Abs'`` (mean absolute value) or ``'Max'`` (largest absolute value).

    YAML::

        filter_thresholder:
          class: StructureParameterPruner
          threshold_criteria: Mean_Abs
          reg_regims:
            conv2.weight: [0.005, Filters]
            fc.weight: [0.001, Rows]
    """

    def __init__(self, name, model, reg_regims, threshold_criteria):
        super().__init__(name)
        if threshold_criteria not in THRESHOLD_CRITERIA:
            raise ArgumentError(f"{name}: threshold_criteria={threshold_criteria!r} must be one of "
                                f"{list(THRESHOLD_CRITERIA)}")
        self.model = model
        self.reg_regims = parse_regims(name, reg_regims, group_types=set(GROUP_TYPE_ALIASES) - {"Blocks"})
        self.threshold_criteria = threshold_criteria

    def targets(self):
        return list(self.reg_regims)

    def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
        threshold, group_type = pattern_lookup(self.reg_regims, param_name)
        zeros_mask_dict[param_name].mask = group_threshold_mask(param, group_type, threshold,
                                                                self.threshold_criteria)
