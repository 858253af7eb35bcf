"""Dynamic Network Surgery: pruning with splicing (hysteresis between two magnitude thresholds)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import ArgumentError
from ..registry import register_pruner
from ..spec import validated
from ..thresholding import Regims
from .base import MaskDict, Meta, NonNegativeReal
from .magnitude import PerParameterValuePruner
from .masks import weights_std


@register_pruner
class SplicingPruner(PerParameterValuePruner):
    """Prunes weights below a low threshold and re-splices pruned weights that grow above a high one.

    Guo, Yao & Chen, "Dynamic Network Surgery for Efficient DNNs", NIPS 2016 (arXiv:1608.04493).
    For each parameter, ``base = mean(|w|) + std(w) * sensitivity``, with the statistics taken from the
    weights the first time the parameter is pruned (as in the paper, so the thresholds do not drift as
    weights get masked). Then, element by element:

    * ``|w| < base * low_thresh_mult``: masked;
    * ``|w| >= base * hi_thresh_mult``: unmasked (spliced back);
    * in between: the previous mask is kept (hysteresis).

    With ``sensitivity_multiplier > 0`` the sensitivity grows linearly with the epoch:
    ``sensitivity * (1 + sensitivity_multiplier * (current_epoch - starting_epoch))``.

    Re-splicing needs masked weights that keep being updated, as in the paper: schedule this pruner
    with ``mask_on_forward_only: True`` and ``use_double_copies: True`` (the loss sees masked weights,
    the optimizer updates the full ones) and prune every few mini-batches, as in the YAML below.
    With ``mask_on_forward_only`` alone, masked weights restart from zero at every forward pass.

    Args:
        name: instance name.
        sensitivities: ``{parameter name or regex or '*': sensitivity >= 0}``.
        low_thresh_mult: multiplier of ``base`` giving the pruning threshold (>= 0).
        hi_thresh_mult: multiplier of ``base`` giving the splicing threshold (>= ``low_thresh_mult``).
        sensitivity_multiplier: per-epoch growth rate of the sensitivity (>= 0; 0: constant).

    YAML::

        splicing_pruner:
          class: SplicingPruner
          low_thresh_mult: 0.9
          hi_thresh_mult: 1.1
          sensitivity_multiplier: 0.015
          sensitivities:
            'conv1.weight': 0.40
            'fc.weight': 0.60

    Its policy, as the paper schedules it::

        policies:
          - pruner:
              instance_name: splicing_pruner
              args:
                keep_mask: True
                mini_batch_pruning_frequency: 1
                mask_on_forward_only: True
                use_double_copies: True
            starting_epoch: 0
            ending_epoch: 47
            frequency: 1
    """

    @validated
    def __init__(self, name: str, sensitivities: Regims[NonNegativeReal], low_thresh_mult: NonNegativeReal,
                 hi_thresh_mult: NonNegativeReal, sensitivity_multiplier: NonNegativeReal = 0) -> None:
        super().__init__(name, "sensitivities", sensitivities)
        if hi_thresh_mult < low_thresh_mult:
            raise ArgumentError(f"{name}: hi_thresh_mult={hi_thresh_mult} is below low_thresh_mult="
                                f"{low_thresh_mult}; the splicing threshold must not be below the pruning one",
                                argument="hi_thresh_mult")
        self.low_thresh_mult = low_thresh_mult
        self.hi_thresh_mult = hi_thresh_mult
        self.sensitivity_multiplier = sensitivity_multiplier
        # param name -> [mean(|w|), std(w)] from the first pruning of that param
        self.weight_stats: dict[str, list[float]] = {}

    @property
    def sensitivities(self) -> dict[str, float]:
        return self.values

    def current_sensitivity(self, param_name: str, meta: Meta) -> float:
        """The sensitivity of ``param_name`` at ``meta['current_epoch']`` (grown by the multiplier)."""
        sensitivity = self.value_for(param_name)
        if self.sensitivity_multiplier:
            sensitivity *= 1.0 + self.sensitivity_multiplier * (meta["current_epoch"] - meta["starting_epoch"])
        return sensitivity

    def splice_thresholds(self, param: torch.Tensor, param_name: str, meta: Meta) -> tuple[float, float]:
        """Returns ``(low, high)`` thresholds for ``param``, recording its statistics on first use."""
        stats = self.weight_stats.get(param_name)
        if stats is None:
            with torch.no_grad():
                stats = [param.detach().abs().mean().item(), weights_std(param).item()]
            self.weight_stats[param_name] = stats
        mean_magnitude, std = stats
        base = mean_magnitude + std * self.current_sensitivity(param_name, meta)
        return base * self.low_thresh_mult, base * self.hi_thresh_mult

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        low, high = self.splice_thresholds(param, param_name, meta)
        masker = zeros_mask_dict[param_name]
        with torch.no_grad():
            magnitudes = param.detach().abs()
            mask = torch.ones_like(param, dtype=torch.bool) if masker.mask is None else masker.mask.clone()
            mask.masked_fill_(magnitudes < low, 0).masked_fill_(magnitudes >= high, 1)
        masker.mask = mask

    def state_dict(self) -> dict[str, Any]:
        return {"weight_stats": {name: list(stats) for name, stats in self.weight_stats.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.weight_stats = {name: [float(v) for v in stats]
                             for name, stats in state.get("weight_stats", {}).items()}
