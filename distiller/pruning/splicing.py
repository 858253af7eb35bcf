"""Dynamic Network Surgery: pruning with splicing (hysteresis between two magnitude thresholds)."""
import torch

from ..errors import ArgumentError
from ..registry import register_pruner
from .magnitude import PerParameterValuePruner, as_number
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

    def __init__(self, name, sensitivities, low_thresh_mult, hi_thresh_mult, sensitivity_multiplier=0):
        super().__init__(name, "sensitivities", sensitivities, minimum=0.0)
        self.low_thresh_mult = as_number(name, "low_thresh_mult", low_thresh_mult, minimum=0.0)
        self.hi_thresh_mult = as_number(name, "hi_thresh_mult", hi_thresh_mult, minimum=0.0)
        if self.hi_thresh_mult < self.low_thresh_mult:
            raise ArgumentError(f"{name}: hi_thresh_mult={hi_thresh_mult} is below low_thresh_mult="
                                f"{low_thresh_mult}; the splicing threshold must not be below the pruning one")
        self.sensitivity_multiplier = as_number(name, "sensitivity_multiplier", sensitivity_multiplier,
                                                minimum=0.0)
        self.weight_stats = {}  # param name -> [mean(|w|), std(w)] from the first pruning of that param

    @property
    def sensitivities(self):
        return self.values

    def current_sensitivity(self, param_name, meta):
        """The sensitivity of ``param_name`` at ``meta['current_epoch']`` (grown by the multiplier)."""
        sensitivity = self.value_for(param_name)
        if self.sensitivity_multiplier:
            sensitivity *= 1.0 + self.sensitivity_multiplier * (meta["current_epoch"] - meta["starting_epoch"])
        return sensitivity

    def splice_thresholds(self, param, param_name, meta):
        """Returns ``(low, high)`` thresholds for ``param``, recording its statistics on first use."""
        stats = self.weight_stats.get(param_name)
        if stats is None:
            with torch.no_grad():
                stats = [param.detach().abs().mean().item(), weights_std(param).item()]
            self.weight_stats[param_name] = stats
        mean_magnitude, std = stats
        base = mean_magnitude + std * self.current_sensitivity(param_name, meta)
        return base * self.low_thresh_mult, base * self.hi_thresh_mult

    def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
        low, high = self.splice_thresholds(param, param_name, meta)
        masker = zeros_mask_dict[param_name]
        with torch.no_grad():
            magnitudes = param.detach().abs()
            mask = torch.ones_like(param) if masker.mask is None else masker.mask.to(param.dtype, copy=True)
            mask.masked_fill_(magnitudes < low, 0).masked_fill_(magnitudes >= high, 1)
        masker.mask = mask

    def state_dict(self):
        return {"weight_stats": {name: list(stats) for name, stats in self.weight_stats.items()}}

    def load_state_dict(self, state):
        self.weight_stats = {name: [float(v) for v in stats]
                             for name, stats in state.get("weight_stats", {}).items()}
