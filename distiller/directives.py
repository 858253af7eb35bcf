"""Training directives under Distiller's names: freezing parameters and adjusting dropout.

Example schedule (fine-tune only the classifier during epochs 30-39)::

    extensions:
      freeze_features:
        class: FreezeTraining
        which_params: [features]

    policies:
      - extension:
          instance_name: freeze_features
        starting_epoch: 30
        ending_epoch: 40
        frequency: 1
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Optional, Union

from torch import nn

from .errors import ArgumentError
from .policy import ScheduledTrainingPolicy, is_last_scheduled_epoch
from .registry import register_extension
from .spec import Range, validated

msglogger = logging.getLogger(__name__)

__all__ = ["freeze_training", "freeze_all", "adjust_dropout", "FreezeTraining"]

_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def freeze_training(model: nn.Module, which_params: Optional[Iterable[str]], freeze: bool) -> list[str]:
    """Stops (``freeze=True``) or resumes training of the parameters whose name contains one of the strings in
    ``which_params`` (e.g. ``['features']``, ``['bn']``), by setting their ``requires_grad``.

    Returns:
        the names of the parameters changed (empty when ``which_params`` is None).
    Raises:
        ArgumentError: a string of ``which_params`` is in no parameter name.
    """
    if which_params is None:
        return []
    if isinstance(which_params, str):
        which_params = [which_params]
    names = [name for name, _ in model.named_parameters()]
    unmatched = [part for part in which_params if not any(part in name for name in names)]
    if unmatched:
        raise ArgumentError(f"freeze_training: no parameter name contains {unmatched}; parameters are named "
                            f"like {names[:3]}")
    changed = []
    for name, param in model.named_parameters():
        if any(part in name for part in which_params):
            param.requires_grad_(not freeze)
            changed.append(name)
    msglogger.info("%s %d parameter(s): %s", "Freezing" if freeze else "Defrosting", len(changed), ", ".join(changed))
    return changed


def freeze_all(model: nn.Module, freeze: bool) -> None:
    """Stops (``freeze=True``) or resumes training of every parameter of ``model``."""
    for param in model.parameters():
        param.requires_grad_(not freeze)


@validated
def adjust_dropout(module: nn.Module, new_probabilty: Annotated[float, Range(0, 1)]) -> None:
    """Sets the drop probability of every dropout layer in ``module`` (the argument keeps Distiller's spelling).

    Han et al. 2015, "Learning both Weights and Connections for Efficient Neural Networks": a pruned network
    has less capacity, so retraining it should use a lower dropout ratio.

    Raises:
        ArgumentError: ``new_probabilty`` is not a number in [0, 1].
    """
    for submodule in module.modules():
        if isinstance(submodule, _DROPOUT_TYPES):
            submodule.p = new_probabilty


@register_extension
class FreezeTraining(ScheduledTrainingPolicy):
    """An extension that freezes the parameters matching ``which_params`` during its scheduled epochs and
    defrosts them after the last one (see :func:`freeze_training`; the module docstring has a whole schedule).

    Args:
        name: the instance name.
        which_params: substrings of the parameter names to freeze; None freezes every parameter.

    YAML::

        freeze_stem:
          class: FreezeTraining
          which_params: [conv1, bn1]
    """

    @validated
    def __init__(self, name: str, which_params: Optional[Union[str, Sequence[str]]] = None) -> None:
        super().__init__()
        self.name = name
        self.which_params = which_params

    def _apply(self, model: nn.Module, freeze: bool) -> None:
        if self.which_params is None:
            freeze_all(model, freeze)
        else:
            freeze_training(model, self.which_params, freeze)

    def on_epoch_begin(self, model: nn.Module, zeros_mask_dict: Any, meta: Any, **kwargs: Any) -> None:
        self._apply(model, True)

    def on_epoch_end(self, model: nn.Module, zeros_mask_dict: Any, meta: Any, **kwargs: Any) -> None:
        if is_last_scheduled_epoch(meta):
            self._apply(model, False)
