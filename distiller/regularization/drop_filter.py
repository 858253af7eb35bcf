"""DropFilter: dropout of whole convolution filters during training.

Pan et al. 2018, "DropFilter: Towards Thinking of Dropout in Convolutional Neural Networks"
(arXiv:1811.06783): at every training mini-batch each filter's output feature map is suppressed with
probability ``p`` (the kept ones are scaled by ``1 / (1 - p)``, as in inverted dropout), which
regularizes like dropout and prepares the network for filter pruning. Weights are never modified and
evaluation is unaffected.

Mechanics: before each scheduled mini-batch the policy calls :meth:`DropFilterRegularizer.on_minibatch_begin`,
which draws one keep-mask per layer; a forward hook on the layer applies it during that mini-batch's
training forward pass; :meth:`~DropFilterRegularizer.loss` (after the forward pass) retires the masks.
Outside the policy's epochs nothing is drawn, so nothing is dropped.

BatchNorm after dropped filters: the running statistics that BatchNorm layers gather in training forward
passes describe networks with dropped filters (a dropped filter's channel has mean and variance 0, and the
layers after it see fewer active inputs), not the full network that evaluation runs. Re-estimate them on
the training data before evaluating after an epoch with drops (:func:`drops_only_in_training` tells when),
as BN calibration does for networks trained as random sub-networks (Yu & Huang 2019, "Universally
Slimmable Networks and Improved Training Techniques"). Training itself is unaffected: in training mode
BatchNorm normalizes with the statistics of the mini-batch.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

import torch

from ..errors import ArgumentError
from ..masking import ParameterMasker, named_scheduled_parameters
from ..registry import register_regularizer
from ..spec import Fraction, validated
from ..thresholding import Regims, ThresholdCriteria
from ..utils import match_names
from .base import Regularizer

if TYPE_CHECKING:
    from ..scheduler import CompressionScheduler


def _owning_module_name(param_name: str) -> str:
    return param_name.rsplit(".", 1)[0] if "." in param_name else ""


@register_regularizer
class DropFilterRegularizer(Regularizer):
    """Drops each output filter of the targeted layers with probability ``p`` at every training mini-batch.

    At least one filter of each layer is always kept.

    Args:
        name: instance name.
        model: the model (given automatically by the YAML schedule): forward hooks are installed on the
            layers that own the targeted weights.
        reg_regims: weight name / regex -> drop probability ``p`` in [0, 1).
        threshold_criteria: must be left out (DropFilter does not threshold).

    YAML::

        drop_filter:
          class: DropFilterRegularizer
          reg_regims:
            conv1.weight: 0.1
            'conv[2-9]\\.weight': 0.3     # names or regular expressions

    Scheduled on the epochs where filters are dropped::

        policies:
          - regularizer: {instance_name: drop_filter}
            starting_epoch: 0
            ending_epoch: 20
            frequency: 1
    """

    reg_regims: dict[str, float]

    @validated
    def __init__(self, name: str, model: torch.nn.Module, reg_regims: Regims[Fraction],
                 threshold_criteria: Optional[ThresholdCriteria] = None) -> None:
        if threshold_criteria is not None:
            raise ArgumentError(f"{name}: DropFilterRegularizer does not threshold; remove threshold_criteria",
                                argument="threshold_criteria")
        super().__init__(name, model, reg_regims, threshold_criteria)
        self._layers: dict[str, tuple[torch.nn.Module, float]] = {}   # module name -> (module, drop probability)
        names = [n for n, _ in named_scheduled_parameters(model)]  # conv1.weight under quantization too
        for hits in match_names(list(self.reg_regims), names).values():
            for param_name in hits:
                layer = _owning_module_name(param_name)
                self._layers[layer] = (model.get_submodule(layer), self.regim(param_name))
        self._keep: dict[str, torch.Tensor] = {}   # module name -> keep-mask for the current mini-batch
        self._handles = [module.register_forward_hook(self._make_hook(layer))
                         for layer, (module, _) in self._layers.items()]

    def _make_hook(self, layer: str) -> Callable[[torch.nn.Module, Any, torch.Tensor], Optional[torch.Tensor]]:
        def hook(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> Optional[torch.Tensor]:
            keep = self._keep.get(layer)
            if keep is None or not module.training:
                return None
            scale = keep.to(output.dtype) / (1.0 - self._layers[layer][1])
            return output * scale.to(output.device).view([1, -1] + [1] * (output.dim() - 2))
        return hook

    def on_minibatch_begin(self, model: torch.nn.Module, zeros_mask_dict: Mapping[str, ParameterMasker]) -> None:
        """Draws this mini-batch's filter keep-masks."""
        for layer, (module, probability) in self._layers.items():
            weight = cast(torch.Tensor, module.weight)  # the quantized buffer under quantization-aware training
            draws = torch.rand(weight.shape[0], device=weight.device)
            keep = draws >= probability
            keep[draws.argmax()] = True          # never drop every filter of a layer
            self._keep[layer] = keep

    def loss(self, param: torch.Tensor, param_name: str, regularizer_loss: torch.Tensor,
             zeros_mask_dict: Mapping[str, ParameterMasker]) -> torch.Tensor:
        """Retires the mini-batch's masks (the forward pass is over); DropFilter adds no loss term."""
        self._keep.pop(_owning_module_name(param_name), None)
        return regularizer_loss

    def remove_hooks(self) -> None:
        """Removes the forward hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def drops_only_in_training(scheduler: CompressionScheduler, epoch: int) -> bool:
    """Whether a policy scheduled in ``epoch`` drops structures in training forward passes only.

    That is a :class:`DropFilterRegularizer`, or a pruner whose forward-only masks (``use_double_copies`` or
    ``mask_on_forward_only``) are discarded after each mini-batch (``discard_masks_at_minibatch_end``), such
    as :class:`~distiller.pruning.BernoulliFilterPruner` drawing a new mask every mini-batch. After such an
    epoch the BatchNorm running statistics do not fit the network that evaluation runs (see the module
    docstring): recalibrate them first.

    Args:
        scheduler: the compression scheduler.
        epoch: the epoch just trained.
    Returns:
        True when the BatchNorm statistics should be re-estimated before evaluating.

    Example::

        if drops_only_in_training(scheduler, epoch):
            with torch.no_grad():
                torch.optim.swa_utils.update_bn(train_loader, model)
        top1 = evaluate(model, val_loader)
    """
    for policy in scheduler.policies.get(epoch, ()):
        if isinstance(getattr(policy, "regularizer", None), DropFilterRegularizer):
            return True
        forward_only = getattr(policy, "use_double_copies", False) or getattr(policy, "mask_on_forward_only", False)
        if forward_only and getattr(policy, "discard_masks_at_minibatch_end", False):
            return True
    return False
