"""Per-layer ``overrides`` of a quantizer: their type, the check of their settings and the error naming a bad entry.

``overrides`` is an ordered mapping (YAML mapping, OrderedDict) of patterns to settings, or a list of
``[pattern, settings]`` pairs (as :meth:`~distiller.quantization.Quantizer.state_dict` records it); each
pattern is a module name or a full-match regular expression, each settings dict holds bit widths
(:data:`BITS_KEYS`) and method-specific keys. A setting has the type of the quantizer argument it overrides
and is checked by :mod:`distiller.spec` against that type; a setting with a structure of its own (e.g.
``input_overrides``) is checked by its function (:class:`CheckedBy`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Optional

from pydantic import BeforeValidator

from ..errors import ArgumentError, UnmatchedNameError
from ..spec import BitWidth, check_value

__all__ = ["OverrideError", "Overrides", "BitsSetting", "BITS_KEYS", "BITS_TYPES", "CheckedBy", "check_overrides",
           "override_pattern"]

#: Bit-width settings and the :class:`~distiller.quantization.QBits` field each one sets.
BITS_KEYS = {"bits_activations": "acts", "bits_weights": "wts", "bits_bias": "bias"}
#: A bit width that may be None ("not quantized").
BitsSetting = Optional[BitWidth]
#: The type of each bit-width setting.
BITS_TYPES: dict[str, Any] = {key: BitsSetting for key in BITS_KEYS}


class OverrideError(ArgumentError):
    """An entry of a quantizer's ``overrides`` that cannot be applied.

    Its ``argument`` is ``'overrides'`` and its ``location`` ``(pattern,)``, ``(pattern, setting)`` or, for a
    place inside the setting's value, ``(pattern, setting, *inner)``, so a schedule reader can point at the line.

    Attributes:
        pattern: the entry's key (as :class:`~distiller.errors.UnmatchedNameError` has for patterns that
            match nothing).
    """

    def __init__(self, pattern: str, message: str, setting: Optional[str] = None, inner: tuple[Any, ...] = ()) -> None:
        self.pattern = pattern
        super().__init__(message, argument="overrides",
                         location=(pattern,) if setting is None else (pattern, setting, *inner))


@dataclasses.dataclass(frozen=True)
class CheckedBy:
    """In a quantizer's ``override_types``: a setting checked by ``check(owner, argument, value)``, which returns
    the value normalised or raises :class:`~distiller.errors.ArgumentError` whose ``location`` is the place
    inside the value."""
    check: Callable[[str, str, Any], Any]


def _pairs_as_mapping(value: Any) -> Any:
    """A list of ``[pattern, settings]`` pairs as an ordered mapping; anything else unchanged (the type check
    reports it)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        return value
    patterns = [pattern for pattern, _ in value]
    repeated = sorted({repr(p) for p in patterns if patterns.count(p) > 1})
    if repeated:
        raise ValueError(f"pattern(s) {', '.join(repeated)} given more than once")
    return dict(value)


#: The type of a quantizer's ``overrides`` argument (None: no overrides).
Overrides = Annotated[Mapping[str, Mapping[str, object]], BeforeValidator(_pairs_as_mapping)]


def check_overrides(owner: str, overrides: Optional[Mapping[str, Mapping[str, Any]]],
                    types: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The overrides as a list of ``(pattern, settings)``, each setting named in ``types`` checked against its
    type and normalised (e.g. ``'1e-3'`` -> 0.001); other settings pass unchanged.

    Args:
        owner: the quantizer's class name, for messages.
        overrides: already of type :data:`Overrides` (a mapping).
        types: setting name -> type (an annotation :func:`distiller.spec.check_value` understands, or a
            :class:`CheckedBy`).
    Raises:
        OverrideError: a setting whose value does not have its type (the message names the entry, the
            setting, the expected type and the value; the location goes down to the place inside the value).
    """
    result = []
    for pattern, settings in (overrides or {}).items():
        checked = dict(settings)
        for key, value in settings.items():
            if key in types:
                argument, kind = f"overrides[{pattern!r}][{key!r}]", types[key]
                try:
                    checked[key] = (kind.check(owner, argument, value) if isinstance(kind, CheckedBy)
                                    else check_value(owner, argument, kind, value))
                except ArgumentError as err:
                    raise OverrideError(pattern, str(err), setting=key, inner=err.location) from None
        result.append((pattern, checked))
    return result


def override_pattern(err: Exception) -> Optional[str]:
    """The pattern of the ``overrides`` entry that a quantizer's error is about, or None.

    That is :attr:`OverrideError.pattern`, the pattern of an :class:`~distiller.errors.UnmatchedNameError`
    (overrides are the only names a quantizer matches) or the entry of a type error inside ``overrides``.
    """
    if isinstance(err, (OverrideError, UnmatchedNameError)):
        return err.pattern
    if isinstance(err, ArgumentError) and err.argument == "overrides" and err.location:
        return str(err.location[0])
    return None
