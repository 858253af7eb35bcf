"""Per-layer ``overrides`` of a quantizer: their normal form and the error naming a bad entry.

``overrides`` is an ordered mapping (YAML mapping, OrderedDict) or a list of ``[pattern, settings]`` pairs;
each pattern is a module name or a full-match regular expression, each settings dict holds bit widths
(:data:`BITS_KEYS`) and method-specific keys.
"""
from ..errors import ArgumentError
from .q_utils import validate_num_bits

__all__ = ["OverrideError", "normalize_overrides", "BITS_KEYS"]

#: Bit-width settings and the :class:`~distiller.quantization.QBits` field each one sets.
BITS_KEYS = {"bits_activations": "acts", "bits_weights": "wts", "bits_bias": "bias"}


class OverrideError(ArgumentError):
    """An entry of a quantizer's ``overrides`` that cannot be applied.

    Attributes:
        pattern: the entry's key, so that a schedule reader can point at its line (as
            :class:`~distiller.errors.UnmatchedNameError` does for patterns that match nothing).
    """

    def __init__(self, pattern, message: str) -> None:
        self.pattern = pattern
        super().__init__(message)


def normalize_overrides(overrides):
    """Returns the overrides as a list of (pattern, settings dict), validating bit widths."""
    if overrides is None:
        return []
    if isinstance(overrides, dict):
        items = list(overrides.items())
    elif isinstance(overrides, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2
                                                      for p in overrides):
        items = [tuple(p) for p in overrides]
    else:
        raise ArgumentError("overrides must be an ordered mapping {pattern: {setting: value}} or a list of "
                            f"[pattern, settings] pairs, got {type(overrides).__name__}")
    result = []
    for pattern, settings in items:
        if not isinstance(pattern, str):
            raise OverrideError(pattern, f"override pattern {pattern!r} must be a string (module name or regex)")
        if not isinstance(settings, dict):
            raise OverrideError(pattern, f"overrides['{pattern}'] must be a mapping of settings (e.g. "
                                         f"{{bits_weights: 4}}), got {settings!r}")
        for key in BITS_KEYS:
            if key in settings:
                try:
                    validate_num_bits(settings[key], f"overrides['{pattern}'].{key}")
                except ArgumentError as err:
                    raise OverrideError(pattern, str(err)) from None
        result.append((pattern, dict(settings)))
    return result
