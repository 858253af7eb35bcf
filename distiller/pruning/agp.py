"""Automated Gradual Pruning (AGP).

Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning for model compression",
2017 (arXiv:1710.01878). Sparsity rises from ``initial_sparsity`` to ``final_sparsity`` along a cubic
curve, fast at first and slowly at the end, between the policy's ``starting_epoch`` and ``ending_epoch``.
The rate schedule is a pure function; what gets pruned to reach the target (elements, filters, ...) is
left to the subclass.
"""
import abc

from .base import ParameterPruner


def agp_target_sparsity(initial_sparsity, final_sparsity, starting_epoch, ending_epoch, frequency,
                        current_epoch):
    """The AGP sparsity target for ``current_epoch``.

    ``s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / span) ** 3`` where ``span`` is the last pruning epoch
    relative to ``starting_epoch``: ``((ending_epoch - starting_epoch - 1) // frequency) * frequency``.
    The target reaches ``final_sparsity`` at the last scheduled pruning epoch and stays there.

    Raises:
        ValueError: when the schedule leaves no room for gradual pruning (``span <= 0``).
    """
    frequency = frequency or 1
    span = ((ending_epoch - starting_epoch - 1) // frequency) * frequency
    if span <= 0:
        raise ValueError(f"AGP needs at least two pruning epochs: starting_epoch={starting_epoch}, "
                         f"ending_epoch={ending_epoch}, frequency={frequency} give a span of {span}; "
                         f"increase ending_epoch or lower frequency")
    progress = min(max((current_epoch - starting_epoch) / span, 0.0), 1.0)
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** 3


class AutomatedGradualPrunerBase(ParameterPruner):
    """AGP rate schedule; subclasses decide which elements/structures reach the target.

    Args:
        name: instance name.
        initial_sparsity, final_sparsity: fractions in [0, 1).
        weights: parameter names / regular expressions to prune.
    """

    def __init__(self, name, initial_sparsity, final_sparsity, weights):
        super().__init__(name)
        for label, value in (("initial_sparsity", initial_sparsity), ("final_sparsity", final_sparsity)):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{name}: {label}={value} is outside [0, 1)")
        if final_sparsity < initial_sparsity:
            raise ValueError(f"{name}: final_sparsity={final_sparsity} is below initial_sparsity={initial_sparsity}")
        self.initial_sparsity = float(initial_sparsity)
        self.final_sparsity = float(final_sparsity)
        self.weights = [weights] if isinstance(weights, str) else list(weights)

    def targets(self):
        return self.weights

    def compute_target_sparsity(self, meta):
        return agp_target_sparsity(self.initial_sparsity, self.final_sparsity, meta["starting_epoch"],
                                   meta["ending_epoch"], meta["frequency"], meta["current_epoch"])

    def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
        self.prune_to_target_sparsity(param, param_name, zeros_mask_dict,
                                      self.compute_target_sparsity(meta), meta["model"])

    @abc.abstractmethod
    def prune_to_target_sparsity(self, param, param_name, zeros_mask_dict, target_sparsity, model):
        """Sets the mask of ``param`` so that ``target_sparsity`` of it (elements or structures) is zero."""
