"""Gradual magnitude pruning of recurrent networks with a two-slope threshold schedule."""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ArgumentError
from ..registry import register_pruner
from ..spec import PositiveReal, validated
from .base import MaskDict, Meta, NonNegativeReal, ParameterPruner, WeightNames
from .masks import create_mask_threshold_criterion



def baidu_rnn_threshold(q: float, ramp_epoch_offset: float, ramp_slope_mult: float, starting_epoch: float,
                        ending_epoch: float, frequency: Optional[int], current_epoch: float) -> float:
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

    @validated
    def __init__(self, name: str, q: PositiveReal, ramp_epoch_offset: NonNegativeReal, ramp_slope_mult: NonNegativeReal,
                 weights: WeightNames) -> None:
        super().__init__(name)
        self.q = q
        self.ramp_epoch_offset = ramp_epoch_offset
        self.ramp_slope_mult = ramp_slope_mult
        self.weights = list(weights)

    def targets(self) -> list[str]:
        return self.weights

    def threshold(self, meta: Meta) -> float:
        """The pruning threshold at ``meta['current_epoch']``."""
        try:
            return baidu_rnn_threshold(self.q, self.ramp_epoch_offset, self.ramp_slope_mult,
                                       meta["starting_epoch"], meta["ending_epoch"], meta["frequency"],
                                       meta["current_epoch"])
        except ValueError as err:
            raise ArgumentError(f"{self.name}: {err}") from None

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        zeros_mask_dict[param_name].mask = create_mask_threshold_criterion(param, self.threshold(meta))
