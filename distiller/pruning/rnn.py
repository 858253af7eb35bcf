"""Gradual magnitude pruning of recurrent networks with a two-slope threshold schedule."""
from ..errors import ArgumentError
from ..registry import register_pruner
from .base import ParameterPruner
from .magnitude import as_number, as_weights_list
from .masks import create_mask_threshold_criterion


def baidu_rnn_threshold(q, ramp_epoch_offset, ramp_slope_mult, starting_epoch, ending_epoch,
                        frequency, current_epoch):
    """The magnitude threshold of Narang et al. 2017 at ``current_epoch``.

    With ``ramp = starting_epoch + ramp_epoch_offset``, the start slope is
    ``theta = 2 * q * frequency / (2 * (ramp - starting_epoch) + 3 * (ending_epoch - ramp))`` and the
    ramp slope ``phi = ramp_slope_mult * theta``. The threshold is
    ``theta * (t - starting_epoch + 1) / frequency`` before the ramp and
    ``(theta * (ramp - starting_epoch + 1) + phi * (t - ramp + 1)) / frequency`` from it on.

    Raises:
        ValueError: when the ramp epoch is not before ``ending_epoch``.
    """
    frequency = frequency or 1
    ramp_epoch = starting_epoch + ramp_epoch_offset
    if not starting_epoch <= ramp_epoch < ending_epoch:
        raise ArgumentError(f"the ramp epoch starting_epoch + ramp_epoch_offset = {ramp_epoch} must lie in "
                            f"[starting_epoch={starting_epoch}, ending_epoch={ending_epoch}); lower "
                         f"ramp_epoch_offset or extend the policy")
    start_slope = 2.0 * q * frequency / (2.0 * (ramp_epoch - starting_epoch)
                                              + 3.0 * (ending_epoch - ramp_epoch))
    if current_epoch < ramp_epoch:
        return start_slope * (current_epoch - starting_epoch + 1) / frequency
    ramp_slope = ramp_slope_mult * start_slope
    return (start_slope * (ramp_epoch - starting_epoch + 1)
            + ramp_slope * (current_epoch - ramp_epoch + 1)) / frequency


@register_pruner
class BaiduRNNPruner(ParameterPruner):
    """Prunes recurrent weights with a threshold that rises slowly, then faster from a ramp epoch on.

    Narang, Elsen, Diamos & Sengupta, "Exploring Sparsity in Recurrent Neural Networks", ICLR 2017
    (arXiv:1704.05119). Elements with ``|w| <= threshold`` are pruned; the threshold follows
    :func:`baidu_rnn_threshold`, whose start slope is set from ``q`` (the paper takes the 90th
    percentile of the absolute weights) and whose ramp slope is ``ramp_slope_mult`` times larger (1.5
    in the paper). The schedule depends only on the epoch, so a resumed run needs no extra state.

    Args:
        name: instance name.
        q: magnitude scale of the schedule (> 0); Distiller's name, which its YAML schedules use.
        ramp_epoch_offset: epochs after ``starting_epoch`` where the ramp slope takes over (>= 0).
        ramp_slope_mult: ramp slope / start slope (>= 0).
        weights: parameter names / regular expressions to prune.

    YAML::

        rnn_pruner:
          class: BaiduRNNPruner
          q: 0.17
          ramp_epoch_offset: 1
          ramp_slope_mult: 1.5
          weights: [fc.weight]     # in a recurrent model, e.g. [rnn.weight_ih_l0, rnn.weight_hh_l0]
    """

    def __init__(self, name, q, ramp_epoch_offset, ramp_slope_mult, weights):
        super().__init__(name)
        self.q = as_number(name, "q", q, minimum=0.0)
        if self.q == 0:
            raise ArgumentError(f"{name}: q=0 never prunes anything; give a positive magnitude scale (the paper "
                                f"takes the 90th percentile of |w|)")
        self.ramp_epoch_offset = as_number(name, "ramp_epoch_offset", ramp_epoch_offset, minimum=0.0)
        self.ramp_slope_mult = as_number(name, "ramp_slope_mult", ramp_slope_mult, minimum=0.0)
        self.weights = as_weights_list(name, weights)

    def targets(self):
        return self.weights

    def threshold(self, meta):
        """The pruning threshold at ``meta['current_epoch']``."""
        try:
            return baidu_rnn_threshold(self.q, self.ramp_epoch_offset, self.ramp_slope_mult,
                                       meta["starting_epoch"], meta["ending_epoch"], meta["frequency"],
                                       meta["current_epoch"])
        except ValueError as err:
            raise ArgumentError(f"{self.name}: {err}") from None

    def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
        zeros_mask_dict[param_name].mask = create_mask_threshold_criterion(param, self.threshold(meta))
