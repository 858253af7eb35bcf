"""Pruning masks: one :class:`ParameterMasker` per parameter, kept in a :class:`MaskDict`.

The dict counts every mask change (:attr:`MaskDict.version`), so the scheduler can cache the fused
list of masked parameters until a mask changes; the count belongs to the dict, not to a global.

Quantization-aware training moves a quantized weight to a full-precision Parameter (``conv1.weight`` becomes
the Parameter ``conv1.float_weight``; ``conv1.weight`` is then a buffer holding the quantized value). A schedule
keeps calling the weight ``conv1.weight``: :func:`named_scheduled_parameters` lists the model's parameters
under those names, and a :class:`MaskDict` answers ``conv1.weight`` with the masker of ``conv1.float_weight``
(:attr:`MaskDict.aliases`). So pruners and regularizers act on the float copy, masks are applied to it after
each optimizer step, and the quantized weight computed from it is zero wherever the mask is.

Storage: a mask is kept as a ``torch.bool`` tensor (1 byte per element; Distiller kept float copies, 4 bytes
per element in float32). A masker set with a float 0/1 tensor (a pruner's helper output, an old checkpoint)
converts it; any other value is refused. For very large layers, :attr:`ParameterMasker.packed` keeps the
mask bit-packed (8 elements per byte, :func:`pack_mask`), unpacked transiently whenever it is applied:
1/16 of the weight's bf16 bytes, at the cost of an unpack per re-masking. :func:`mask_memory_report`
measures what masks, double copies and quantization copies cost next to the weights.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Optional, Union

import torch

from .errors import ArgumentError

__all__ = ["ParameterMasker", "MaskDict", "create_model_masks_dict", "FP_BKP_PREFIX", "float_copy_aliases",
           "trained_parameter", "named_scheduled_parameters", "as_bool_mask", "pack_mask", "unpack_mask",
           "mask_multiplier", "MaskMemory", "mask_memory_report"]

#: Prefix of the full-precision copy of a quantized parameter (``weight`` -> ``float_weight``).
FP_BKP_PREFIX = "float_"

_BIT_SHIFTS = torch.arange(8, dtype=torch.uint8)


def as_bool_mask(value: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """``value`` as a ``torch.bool`` mask (True = keep): a bool tensor as is, a 0/1 tensor of any other dtype
    converted (e.g. a float mask from a pruning helper or from a checkpoint written before masks were bool).

    Raises:
        ArgumentError: ``value`` holds something other than 0 and 1 (naming ``name``).
    """
    if value.dtype == torch.bool:
        return value
    with torch.no_grad():
        keep = value != 0
        if bool(torch.any(keep & (value != 1))):
            raise ArgumentError(f"the mask of '{name}' holds values other than 0 and 1: a pruning mask keeps (1) or "
                                "prunes (0) each element; scale weights directly instead")
        return keep


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Bit-packs a bool mask: a uint8 tensor of ``ceil(numel / 8)`` bytes, element ``i`` in bit ``i % 8``
    (least significant first) of byte ``i // 8``. :func:`unpack_mask` inverts it."""
    flat = mask.reshape(-1).view(torch.uint8) if mask.dtype == torch.bool else (mask.reshape(-1) != 0).view(torch.uint8)
    padding = (-flat.numel()) % 8
    if padding:
        flat = torch.nn.functional.pad(flat, (0, padding))
    shifts = _BIT_SHIFTS.to(flat.device)
    return torch.bitwise_left_shift(flat.view(-1, 8), shifts).sum(dim=1, dtype=torch.uint8)


def unpack_mask(packed: torch.Tensor, shape: Union[torch.Size, tuple[int, ...]]) -> torch.Tensor:
    """The bool mask of ``shape`` that :func:`pack_mask` packed into ``packed``."""
    numel = 1
    for size in shape:
        numel *= size
    bits = torch.bitwise_right_shift(packed.unsqueeze(1), _BIT_SHIFTS.to(packed.device)).bitwise_and_(1)
    return bits.reshape(-1)[:numel].view(torch.bool).view(shape)


def mask_multiplier(mask: torch.Tensor) -> torch.Tensor:
    """The view of a bool mask to multiply weights with in place: uint8 (no copy). A float-by-uint8 multiply
    runs about twice as fast as float-by-bool on CPU (measured with ``torch._foreach_mul_``, torch 2.14)."""
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


class ParameterMasker:
    """Holds the pruning mask of one parameter and applies it.

    Attributes:
        mask: a bool tensor with the parameter's shape (True = keep), or None (nothing masked). Set it with
            a bool or a 0/1 tensor of any dtype (converted to bool).
        packed: keep the mask bit-packed (see :attr:`packed`).
        mask_on_forward_only: mask only for the forward pass ("soft" pruning): the optimizer step may
            move masked weights, which are zeroed again before the next forward pass.
        use_double_copies: compute the loss with masked weights but update the unmasked copy
            (the copy is restored just before the optimizer step). Memory: from the mini-batch's start to
            the optimizer step it holds a full copy of the weight (as many bytes as the weight, for every
            such parameter at once). ``mask_on_forward_only`` alone keeps no copy, but then pruned weights
            restart from zero at each step instead of keeping their values.
        is_regularization_mask: the mask is applied once and then discarded.
    """

    def __init__(self, param_name: str) -> None:
        self.param_name = param_name
        self._mask: Optional[torch.Tensor] = None
        self._packed: Optional[tuple[torch.Tensor, torch.Size]] = None
        self._pack = False
        self._owner: Optional[MaskDict] = None
        self.is_regularization_mask = False
        self.use_double_copies = False
        self.mask_on_forward_only = False
        self.unmasked_copy: Optional[torch.Tensor] = None
        self.backward_hook_handle: Any = None

    @property
    def mask(self) -> Optional[torch.Tensor]:
        if self._packed is not None:
            return unpack_mask(*self._packed)
        return self._mask

    @mask.setter
    def mask(self, value: Optional[torch.Tensor]) -> None:
        bool_mask = None if value is None else as_bool_mask(value, self.param_name)
        if self._pack and bool_mask is not None:
            self._packed, self._mask = (pack_mask(bool_mask), bool_mask.shape), None
        else:
            self._packed, self._mask = None, bool_mask
        self._changed()

    @property
    def packed(self) -> bool:
        """Whether the mask is stored bit-packed (8 elements per byte instead of 1 per byte).

        Setting it converts the mask already held, and masks set later are packed too. Each read of
        :attr:`mask` then unpacks a transient bool tensor, and the scheduler unpacks the mask at every
        re-masking instead of including it in its fused multiply: worth it only for layers whose bool mask
        would not fit in memory (see :meth:`MaskDict.pack`).
        """
        return self._pack

    @packed.setter
    def packed(self, value: bool) -> None:
        if bool(value) == self._pack:
            return  # repacking would only bump the masks' version (re-fusing and re-broadcasting them)
        current = self.mask
        self._pack = bool(value)
        self.mask = current

    @property
    def has_mask(self) -> bool:
        """Whether a mask is set (without unpacking a packed one)."""
        return self._mask is not None or self._packed is not None

    @property
    def mask_numel(self) -> int:
        """Elements of the mask (0 without a mask), without unpacking a packed one."""
        if self._packed is not None:
            return self._packed[1].numel()
        return 0 if self._mask is None else self._mask.numel()

    @property
    def mask_bytes(self) -> int:
        """Bytes the stored mask occupies (0 without a mask)."""
        stored = self._packed[0] if self._packed is not None else self._mask
        return 0 if stored is None else stored.numel() * stored.element_size()

    def _changed(self) -> None:
        if self._owner is not None:
            self._owner.version += 1

    @property
    def is_soft(self) -> bool:
        """True when the mask is applied for the forward pass only (not after the optimizer step)."""
        return self.use_double_copies or self.mask_on_forward_only

    def apply_mask(self, parameter: torch.Tensor) -> Optional[torch.Tensor]:
        """Masks ``parameter`` in place (keeping an unmasked copy when ``use_double_copies``)."""
        if not self.has_mask:
            return None
        if self.use_double_copies:
            self.unmasked_copy = parameter.detach().clone()
        self.mask_tensor(parameter)
        if self.is_regularization_mask:
            self.mask = None
        return parameter

    def mask_tensor(self, tensor: torch.Tensor) -> None:
        mask = self.mask
        if mask is not None:
            with torch.no_grad():
                tensor.mul_(mask_multiplier(mask))

    def mask_gradient(self, gradient: torch.Tensor) -> Optional[torch.Tensor]:
        """Gradient hook: zeroes the gradient of masked elements (None keeps the gradient unchanged)."""
        mask = self.mask
        if mask is not None:
            return gradient.mul(mask_multiplier(mask))
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

    def pack(self, min_numel: int = 0, model: Optional[torch.nn.Module] = None) -> list[str]:
        """Stores bit-packed (see :attr:`ParameterMasker.packed`) the masks of at least ``min_numel`` elements.

        Args:
            min_numel: the smallest mask to pack; smaller ones stay bool and in the scheduler's fused multiply.
            model: also mark the maskers of ``model``'s parameters of that size whose masks are not set yet, so
                masks a pruner sets later are packed as soon as they are stored.
        Returns:
            the names of the maskers that now pack their masks.
        """
        sizes = {name: param.numel() for name, param in model.named_parameters()} if model is not None else {}
        sizes.update((name, masker.mask_numel) for name, masker in self.items() if masker.has_mask)
        names = [name for name, numel in sizes.items() if numel >= min_numel]
        for name in names:
            self[name].packed = True
        return names


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


@dataclass(frozen=True)
class MaskMemory:
    """What pruning masks, double copies and quantization copies cost in memory, next to the weights they mask.

    Attributes:
        masked_parameters: parameters with a mask set.
        masked_elements: their elements.
        weight_bytes: their bytes, in their own dtype.
        mask_bytes: bytes the masks occupy as stored (bool: 1 per element; packed: 1 per 8).
        packed_mask_bytes: what the same masks would occupy all bit-packed.
        double_copy_bytes: bytes of the unmasked copies that ``use_double_copies`` holds during each step.
        quantized_buffer_bytes: bytes of the quantized-weight buffers kept beside full-precision copies by
            quantization-aware training (the float copy is the trained parameter; the buffer is extra).
    """

    masked_parameters: int
    masked_elements: int
    weight_bytes: int
    mask_bytes: int
    packed_mask_bytes: int
    double_copy_bytes: int
    quantized_buffer_bytes: int

    @property
    def mask_to_weight(self) -> float:
        """Mask bytes / weight bytes (Distiller's float32 masks on float32 weights: 1.0)."""
        return self.mask_bytes / self.weight_bytes if self.weight_bytes else 0.0

    @property
    def mask_to_bf16_weight(self) -> float:
        """Mask bytes / the bytes of the same weights in bf16 (bool masks: 0.5; packed: 1/16)."""
        return self.mask_bytes / (2 * self.masked_elements) if self.masked_elements else 0.0

    @property
    def packed_to_bf16_weight(self) -> float:
        """Packed mask bytes / the bytes of the same weights in bf16 (about 1/16)."""
        return self.packed_mask_bytes / (2 * self.masked_elements) if self.masked_elements else 0.0

    def as_dict(self) -> dict[str, Union[int, float]]:
        """The fields and the three ratios, as plain data (e.g. for a JSON line)."""
        return {**asdict(self), "mask_to_weight": round(self.mask_to_weight, 6),
                "mask_to_bf16_weight": round(self.mask_to_bf16_weight, 6),
                "packed_to_bf16_weight": round(self.packed_to_bf16_weight, 6)}


def mask_memory_report(source: Any, model: Optional[torch.nn.Module] = None) -> MaskMemory:
    """Measures the memory of the masks (and of double / quantization copies) against the masked weights.

    Args:
        source: a :class:`~distiller.CompressionScheduler` (its masks and model), or a name ->
            :class:`ParameterMasker` mapping together with ``model``.
        model: the model the masks belong to (taken from ``source`` when it is a scheduler).
    Raises:
        ArgumentError: a mask mapping without ``model``.

    Example:
        >>> report = mask_memory_report(scheduler)
        >>> report.mask_to_bf16_weight    # 0.5 with bool masks, 0.0625 with all masks packed
    """
    masks: Mapping[str, ParameterMasker] = getattr(source, "zeros_mask_dict", source)
    model = getattr(source, "model", model)
    if model is None:
        raise ArgumentError("mask_memory_report needs the model the masks belong to: pass a CompressionScheduler, "
                            "or the masks and model=...")
    params = dict(model.named_parameters())
    counts = dict.fromkeys(("parameters", "elements", "weight", "mask", "packed", "double"), 0)
    for name, masker in masks.items():
        param = params.get(name)
        if param is None or not masker.has_mask:
            continue
        weight_bytes = param.numel() * param.element_size()
        counts["parameters"] += 1
        counts["elements"] += param.numel()
        counts["weight"] += weight_bytes
        counts["mask"] += masker.mask_bytes
        counts["packed"] += (param.numel() + 7) // 8
        counts["double"] += weight_bytes if masker.use_double_copies else 0
    buffers = [model.get_buffer(name) for name in float_copy_aliases(model)]
    quantized = sum(buffer.numel() * buffer.element_size() for buffer in buffers)
    return MaskMemory(counts["parameters"], counts["elements"], counts["weight"], counts["mask"], counts["packed"],
                      counts["double"], quantized)
