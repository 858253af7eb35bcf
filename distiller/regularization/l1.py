"""Element-wise L1 regularization (lasso): drives individual weights to zero.

Tibshirani 1996, "Regression Shrinkage and Selection via the Lasso"; used for network pruning by
Han et al. 2015, "Learning both Weights and Connections for Efficient Neural Networks".
"""
from ..errors import ArgumentError
from ..registry import register_regularizer
from ..thresholding import THRESHOLD_CRITERIA, parse_regims, threshold_mask
from ..utils import pattern_lookup
from .base import Regularizer


def check_threshold_criteria(name, threshold_criteria):
    """Raises ValueError unless ``threshold_criteria`` is None, ``'Mean_Abs'`` or ``'Max'``."""
    if threshold_criteria is not None and threshold_criteria not in THRESHOLD_CRITERIA:
        raise ArgumentError(f"{name}: threshold_criteria={threshold_criteria!r} must be one of "
                            f"{list(THRESHOLD_CRITERIA)} or left out")


@register_regularizer
class L1Regularizer(Regularizer):
    """Adds ``strength * sum(|w|)`` per weight to the loss.

    With ``threshold_criteria`` set (any of ``'Mean_Abs'``, ``'Max'``: for single elements they agree),
    after each mini-batch the weights whose magnitude is at or below ``strength`` are zeroed.

    Args:
        name: instance name.
        model: the model (given automatically by the YAML schedule).
        reg_regims: parameter name / regex -> strength.
        threshold_criteria: None, ``'Mean_Abs'`` or ``'Max'``.

    YAML::

        l1_reg:
          class: L1Regularizer
          reg_regims:
            conv1.weight: 0.0001
            fc.weight: 0.0005
          # threshold_criteria: Mean_Abs
    """

    def __init__(self, name, model, reg_regims, threshold_criteria=None):
        check_threshold_criteria(name, threshold_criteria)
        self.strengths = {key: value for key, (value, _) in parse_regims(name, reg_regims).items()}
        super().__init__(name, model, reg_regims, threshold_criteria)

    def loss(self, param, param_name, regularizer_loss, zeros_mask_dict):
        strength = pattern_lookup(self.strengths, param_name)
        return regularizer_loss + strength * param.abs().sum()

    def threshold(self, param, param_name, zeros_mask_dict):
        if self.threshold_criteria is None:
            return
        zeros_mask_dict[param_name].mask = threshold_mask(param, pattern_lookup(self.strengths, param_name))
