"""Pruning masks: one :class:`ParameterMasker` per parameter, kept in a :class:`MaskDict`.

The dict counts every mask change (:attr:`MaskDict.version`), so the scheduler can cache the fused
list of masked parameters until a mask changes; the count belongs to the dict, not to a global.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

import torch

__all__ = ["ParameterMasker", "MaskDict", "create_model_masks_dict"]


class ParameterMasker:
    """Holds the pruning mask of one parameter and applies it.

    Attributes:
        mask: a 0/1 tensor with the parameter's shape, or None (nothing masked).
        mask_on_forward_only: mask only for the forward pass ("soft" pruning): the optimizer step may
            move masked weights, which are zeroed again before the next forward pass.
        use_double_copies: compute the loss with masked weights but update the unmasked copy
            (the copy is restored just before the optimizer step).
        is_regularization_mask: the mask is applied once and then discarded.
    """

    def __init__(self, param_name: str) -> None:
        self.param_name = param_name
        self._mask: Optional[torch.Tensor] = None
        self._owner: Optional[MaskDict] = None
        self.is_regularization_mask = False
        self.use_double_copies = False
        self.mask_on_forward_only = False
        self.unmasked_copy: Optional[torch.Tensor] = None
        self.backward_hook_handle: Any = None

    @property
    def mask(self) -> Optional[torch.Tensor]:
        return self._mask

    @mask.setter
    def mask(self, value: Optional[torch.Tensor]) -> None:
        self._mask = value
        if self._owner is not None:
            self._owner.version += 1

    @property
    def is_soft(self) -> bool:
        """True when the mask is applied for the forward pass only (not after the optimizer step)."""
        return self.use_double_copies or self.mask_on_forward_only

    def apply_mask(self, parameter: torch.Tensor) -> Optional[torch.Tensor]:
        """Masks ``parameter`` in place (keeping an unmasked copy when ``use_double_copies``)."""
        if self.mask is None:
            return None
        if self.use_double_copies:
            self.unmasked_copy = parameter.detach().clone()
        self.mask_tensor(parameter)
        if self.is_regularization_mask:
            self.mask = None
        return parameter

    def mask_tensor(self, tensor: torch.Tensor) -> None:
        if self.mask is not None:
            with torch.no_grad():
                tensor.mul_(self.mask)

    def mask_gradient(self, gradient: torch.Tensor) -> Optional[torch.Tensor]:
        """Gradient hook: zeroes the gradient of masked elements (None keeps the gradient unchanged)."""
        if self.mask is not None:
            return gradient.mul(self.mask)
        return None

    def revert_weights(self, parameter: torch.Tensor) -> None:
        """Restores the unmasked copy saved by :meth:`apply_mask` (double-copies mode)."""
        if not self.use_double_copies or self.unmasked_copy is None:
            return
        with torch.no_grad():
            parameter.copy_(self.unmasked_copy)
        self.unmasked_copy = None


class MaskDict(dict[str, ParameterMasker]):
    """name -> :class:`ParameterMasker`; creates maskers on first access (parameters added by quantization
    or other transforms get one lazily) and counts mask changes in :attr:`version`."""

    def __init__(self, maskers: Union[Mapping[str, ParameterMasker], Iterable[tuple[str, ParameterMasker]]] = ()) \
            -> None:
        super().__init__()
        self.version = 0
        for name, masker in dict(maskers).items():
            self[name] = masker

    def __setitem__(self, name: str, masker: ParameterMasker) -> None:
        masker._owner = self
        self.version += 1
        super().__setitem__(name, masker)

    def __missing__(self, name: str) -> ParameterMasker:
        masker = self[name] = ParameterMasker(name)
        return masker

    def pop(self, name: str, *default: Any) -> Any:
        self.version += 1
        return super().pop(name, *default)


def create_model_masks_dict(model: torch.nn.Module) -> MaskDict:
    """Returns a dict with one (empty) :class:`ParameterMasker` per parameter of ``model``."""
    return MaskDict((name, ParameterMasker(name)) for name, _ in model.named_parameters())
