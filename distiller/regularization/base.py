"""The contract between regularizers and :class:`~distiller.policy.RegularizationPolicy`."""
from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, Optional

import torch

from ..masking import ParameterMasker
from ..thresholding import ThresholdCriteria
from ..utils import pattern_lookup


class Regularizer(abc.ABC):
    """Base class of all regularizers.

    Registered subclasses check their arguments through their annotations (:func:`distiller.spec.validated`).

    Args:
        name: the instance name (the YAML key under ``regularizers:``).
        model: the model being regularized.
        reg_regims: parameter name / regex -> strength, or -> ``[strength, group_type]``.
        threshold_criteria: None, ``'Max'`` or ``'Mean_Abs'``: after each mini-batch, zero the groups
            whose norm falls below the regularization strength (turning the regularizer into a pruner).
    """

    def __init__(self, name: str, model: torch.nn.Module, reg_regims: Mapping[str, Any],
                 threshold_criteria: Optional[ThresholdCriteria] = None) -> None:
        self.name = name
        self.model = model
        self.reg_regims = dict(reg_regims)
        self.threshold_criteria = threshold_criteria

    def targets(self) -> list[str]:
        """The parameter names / regular expressions this regularizer acts on."""
        return list(self.reg_regims)

    def regim(self, param_name: str) -> Any:
        """The ``reg_regims`` entry of ``param_name``: its exact name, else the first regular expression that
        matches it, else ``'*'``.

        Raises:
            KeyError: no entry matches ``param_name`` (it is not one of :meth:`targets`).
        """
        entry = pattern_lookup(self.reg_regims, param_name)
        if entry is None:
            raise KeyError(f"{self.name}: no entry of reg_regims matches parameter '{param_name}' "
                           f"(keys: {list(self.reg_regims)})")
        return entry

    @abc.abstractmethod
    def loss(self, param: torch.Tensor, param_name: str, regularizer_loss: torch.Tensor,
             zeros_mask_dict: Mapping[str, ParameterMasker]) -> torch.Tensor:
        """Returns ``regularizer_loss`` plus this regularizer's term for ``param``."""

    def on_minibatch_begin(self, model: torch.nn.Module, zeros_mask_dict: Mapping[str, ParameterMasker]) -> None:
        """Called before the forward pass of every scheduled mini-batch (default: nothing)."""

    def threshold(self, param: torch.Tensor, param_name: str, zeros_mask_dict: Mapping[str, ParameterMasker]) -> None:
        """Sets ``zeros_mask_dict[param_name].mask`` from ``threshold_criteria`` (default: no-op when None)."""

    def state_dict(self) -> dict[str, Any]:
        """The regularizer's state for a checkpoint (plain data; default: none)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned."""
