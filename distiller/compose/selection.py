"""Which modules a fusion ``config_list`` entry selects: NNI-style ``op_types`` / ``op_names`` (exact names or
regular expressions) and ``exclude_op_names``, resolved against the model once, with clear errors."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ..errors import ArgumentError, suggest
from ..utils import match_names

__all__ = ["select_modules", "check_entry_keys"]

#: The keys every entry may use to select modules.
SELECTION_KEYS = ("op_types", "op_names", "exclude_op_names")


def check_entry_keys(entry: Mapping[str, Any], index: int, settings: Sequence[str], what: str) -> None:
    """Refuses an entry that is not a mapping, has unknown keys or selects nothing.

    Raises:
        ArgumentError: naming ``config_list[index]`` and the valid keys.
    """
    if not isinstance(entry, Mapping):
        raise ArgumentError(f"{what} config_list[{index}] must be a dict, got {type(entry).__name__}")
    valid = (*SELECTION_KEYS, *settings)
    unknown = [key for key in entry if key not in valid]
    if unknown:
        hints = [suggest(key, valid) for key in unknown]
        raise ArgumentError(f"{what} config_list[{index}]: unknown key(s) {', '.join(map(repr, unknown))}"
                            + (f" (did you mean {', '.join(h for h in hints if h)}?)" if any(hints) else "")
                            + f"; valid keys: {', '.join(valid)}")
    if "op_types" not in entry and "op_names" not in entry:
        raise ArgumentError(f"{what} config_list[{index}] selects no module: give op_types (e.g. ['Conv2d']) "
                            "and/or op_names (names or regular expressions)")


def _names(entry: Mapping[str, Any], key: str, index: int, what: str) -> list[str]:
    value = entry.get(key, [])
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ArgumentError(f"{what} config_list[{index}].{key} must be a list of strings, got {value!r}")
    return list(value)


def select_modules(model: nn.Module, entry: Mapping[str, Any], index: int, what: str,
                   weighted: bool = True) -> list[str]:
    """The names of the modules that ``entry`` selects among the weighted ones (with a ``weight``
    Parameter), or among all leaf modules unless ``weighted``, in model order: of a type in ``op_types``
    and matching ``op_names`` (each given selector must hold), minus ``exclude_op_names``.

    Raises:
        ArgumentError: an ``op_types`` name that is no module type of the model, or an entry that
            selects nothing.
        UnmatchedNameError: an ``op_names`` or ``exclude_op_names`` pattern that matches no module.
    """
    kind = "weighted " if weighted else ""
    modules = [(name, module) for name, module in model.named_modules()
               if name and (isinstance(getattr(module, "weight", None), nn.Parameter) if weighted
                            else not any(True for _ in module.children()))]
    names = [name for name, _ in modules]
    op_types = _names(entry, "op_types", index, what)
    present = {type(module).__name__ for _, module in modules}
    for op_type in op_types:
        if op_type not in present:
            hint = suggest(op_type, present)
            raise ArgumentError(f"{what} config_list[{index}].op_types: the model has no {kind}'{op_type}' module"
                                + (f" (did you mean {hint}?)" if hint else "")
                                + f"; its types: {', '.join(sorted(present))}")
    chosen = [name for name, module in modules if not op_types or type(module).__name__ in op_types]
    if "op_names" in entry:
        matched = {n for hits in match_names(_names(entry, "op_names", index, what), names, "module").values()
                   for n in hits}
        chosen = [name for name in chosen if name in matched]
    if "exclude_op_names" in entry:
        excluded = {n for hits in match_names(_names(entry, "exclude_op_names", index, what), names,
                                              "module").values() for n in hits}
        chosen = [name for name in chosen if name not in excluded]
    if not chosen:
        raise ArgumentError(f"{what} config_list[{index}] selects no module: no {kind}module is both of "
                            f"op_types {op_types} and in op_names {entry.get('op_names')}")
    return chosen
