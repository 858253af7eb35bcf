"""Pruning masks: one :class:`ParameterMasker` per parameter, kept in a :class:`MaskDict`.

The dict counts every mask change (:attr:`MaskDict.version`), so the scheduler can cache the fused
list of masked parameters until a mask changes; the count belongs to the dict, not to a global.

Quantization-aware training moves a quantized weight to a full-precision Parameter (``conv1.weight`` becomes
the Parameter ``conv1.float_weight``; ``conv1.weight`` is then a buffer holding the quantized value). A schedule
keeps calling the weight ``conv1.weight``: :func:`named_scheduled_parameters` lists the model's parameters
under those names, and a :class:`MaskDict` answers ``conv1.weight`` with the masker of ``conv1.float_weight``
(:attr:`MaskDict.aliases`). So pruners and regularizers act on the float copy, masks are applied to it after
each optimizer step, and the quantized weight computed from it is zero wherever the mask is.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

import torch

__all__ = ["ParameterMasker", "MaskDict", "create_model_masks_dict", "FP_BKP_PREFIX", "float_copy_aliases",
           "trained_parameter", "named_scheduled_parameters"]

#: Prefix of the full-precision copy of a quantized parameter (``weight`` -> ``float_weight``).
FP_BKP_PREFIX = "float_"


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
    or other transforms get one lazily) and counts mask changes in :attr:`version`.

    Keys are the model's parameter names; ``[]`` also accepts the names in :attr:`aliases` (a quantized
    weight's name for the masker of its float copy, see the module docstring), which the
    :class:`~distiller.CompressionScheduler` keeps up to date with its model. ``in``, ``get`` and iteration
    see the keys only.
    """

    def __init__(self, maskers: Union[Mapping[str, ParameterMasker], Iterable[tuple[str, ParameterMasker]]] = ()) \
            -> None:
        super().__init__()
        self.version = 0
        #: another name of a parameter -> its key (e.g. ``conv1.weight`` -> ``conv1.float_weight``).
        self.aliases: dict[str, str] = {}
        for name, masker in dict(maskers).items():
            self[name] = masker

    def __getitem__(self, name: str) -> ParameterMasker:
        return super().__getitem__(self.aliases.get(name, name))

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


def float_copy_aliases(model: torch.nn.Module) -> dict[str, str]:
    """``{quantized weight name: float copy name}`` for every parameter of ``model`` that a quantizer moved to
    a full-precision copy (``{'conv1.weight': 'conv1.float_weight'}``); empty for a model without any."""
    aliases = {}
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for attr in module._parameters:
            quantized = attr[len(FP_BKP_PREFIX):]
            if attr.startswith(FP_BKP_PREFIX) and quantized in module._buffers:
                aliases[prefix + quantized] = prefix + attr
    return aliases


def trained_parameter(module: torch.nn.Module, attr: str) -> Optional[torch.nn.Parameter]:
    """The Parameter that training updates for ``module``'s tensor ``attr``: its full-precision copy
    ``float_<attr>`` under quantization-aware training, else ``attr`` itself when it is a Parameter, else None."""
    copy = module._parameters.get(FP_BKP_PREFIX + attr)
    return copy if copy is not None else module._parameters.get(attr)


def named_scheduled_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """``model.named_parameters()`` under the names a schedule uses: a quantizer's float copy
    ``conv1.float_weight`` is listed as ``conv1.weight`` (the weight it trains)."""
    renamed = {copy: name for name, copy in float_copy_aliases(model).items()}
    return [(renamed.get(name, name), param) for name, param in model.named_parameters()]
