"""The contract between pruners and the scheduler, and the argument types the pruners share.

A pruner decides masks; it never touches weights. The :class:`~distiller.policy.PruningPolicy` that
schedules it resolves :meth:`ParameterPruner.targets` against the model once (an unmatched name is an
error, not "0% sparsity"), then calls :meth:`ParameterPruner.set_param_mask` for each targeted
parameter at the scheduled epochs / mini-batches. The mask is stored in ``zeros_mask_dict[name].mask``
(a 0/1 tensor with the parameter's shape and device, stored as ``torch.bool``); the scheduler applies it.
"""
from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import annotated_types
import torch
from pydantic import BeforeValidator

from ..masking import ParameterMasker
from ..spec import NamePatterns, NonNegativeReal  # noqa: F401  (re-exported for the pruners)
from ..utils import pattern_lookup

#: Parameter name -> its :class:`~distiller.ParameterMasker`.
MaskDict = Mapping[str, ParameterMasker]
#: The schedule facts a pruner gets (see :meth:`ParameterPruner.set_param_mask`).
Meta = Mapping[str, Any]
_V = TypeVar("_V")



def _as_name_list(value: Any) -> Any:
    """A single name is the list of that name (``weights: fc.weight`` in a schedule)."""
    return [value] if isinstance(value, str) else value


#: ``weights``: one parameter name / regular expression or a non-empty list of them.
WeightNames = Annotated[NamePatterns, BeforeValidator(_as_name_list), annotated_types.MinLen(1)]


def setting_for(owner: str, arg_name: str, settings: Mapping[str, _V], param_name: str) -> _V:
    """``settings``' entry for ``param_name``: exact name, else the first matching regex, else ``'*'``.

    Raises:
        KeyError: naming ``owner``, ``arg_name`` and the parameter when nothing matches.
    """
    value = pattern_lookup(settings, param_name)
    if value is None:
        raise KeyError(f"{owner}: no entry of '{arg_name}' matches parameter '{param_name}' (keys: {list(settings)})")
    return value


class ParameterPruner(abc.ABC):
    """Base class of all pruners.

    Args:
        name: the instance name (the YAML key under ``pruners:``).
    """

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    def targets(self) -> list[str]:
        """Returns the parameter names / regular expressions this pruner acts on (``'*'``: all)."""

    @abc.abstractmethod
    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        """Computes the mask of ``param`` and stores it in ``zeros_mask_dict[param_name].mask``.

        Args:
            param: the parameter tensor.
            param_name: its fully-qualified name in the model.
            zeros_mask_dict: name -> :class:`~distiller.ParameterMasker`.
            meta: schedule facts: ``starting_epoch``, ``ending_epoch``, ``frequency``,
                ``current_epoch`` (fractional when pruning inside an epoch), ``model``, ``optimizer``.
        """

    @property
    def uses_channel_graph(self) -> bool:
        """Whether the pruner traces the model's channel dependency graph (``group_dependency: Graph``)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state that a resumed run needs (default: none)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
