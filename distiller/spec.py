"""Typed arguments: the one place where argument values of schedulable classes are checked.

A schedulable constructor declares what it accepts in its annotations, e.g.
``final_sparsity: Annotated[float, Range(0, 1, hi_open=True)]``, and is decorated with
:func:`validated`. Every call, from a YAML schedule or from Python, then goes through the same check:
values are validated (and YAML quirks normalised: PyYAML reads ``1e-3`` as a string) by pydantic from
the annotations, and a bad value raises :class:`~distiller.errors.ArgumentError` naming the class, the
argument, where inside the value the problem is, what was expected and what was given.
:mod:`distiller.config` adds the schedule file, YAML path and line to that error.

pydantic (not hand-written checks over ``dataclasses``) does the validation because it already knows
every typing construct we use (``Optional``, unions, ``Literal``, nested containers, ``Annotated``
bounds) and reports *where* inside a value a check failed, which is what the YAML path needs.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Optional, TypeVar, Union

import annotated_types
import pydantic
from typing_extensions import dataclass_transform
from pydantic import BeforeValidator, TypeAdapter, ValidationError

from .errors import ArgumentError, suggest

__all__ = ["Range", "Real", "Fraction", "PositiveInt", "NonNegativeInt", "PositiveReal", "NonNegativeReal", "BitWidth",
           "NamePatterns", "validated", "record", "build_record", "check_value", "describe_type"]

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")
_CONFIG = pydantic.ConfigDict(strict=True, arbitrary_types_allowed=True)


def Range(lo: Optional[float] = None, hi: Optional[float] = None, *, lo_open: bool = False,  # noqa: N802
          hi_open: bool = False) -> annotated_types.Interval:
    """A bound for ``Annotated[float, Range(0, 1, hi_open=True)]``: ``lo <= x <= hi`` (``<`` when open)."""
    return annotated_types.Interval(gt=lo if lo_open else None, ge=None if lo_open else lo,
                                    lt=hi if hi_open else None, le=None if hi_open else hi)


def _yaml_real(value: Any) -> Any:
    """Numbers as YAML gives them: ``'1e-3'`` (PyYAML's reading of an exponent without a dot) becomes
    0.001; booleans are refused (``True`` is no sparsity level)."""
    if isinstance(value, bool):
        raise ValueError("a number is expected, not a boolean")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value  # pydantic reports the type error
    return value


def _compiles(patterns: Sequence[str]) -> Sequence[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"'{pattern}' is not a valid regular expression ({err})") from None
    return patterns


#: A real number; numeric strings from YAML are accepted, booleans are not.
Real = Annotated[float, BeforeValidator(_yaml_real)]
#: A fraction of a tensor, e.g. a sparsity level: ``0 <= x < 1``.
Fraction = Annotated[float, Range(0, 1, hi_open=True)]
PositiveInt = Annotated[int, annotated_types.Gt(0)]
#: A real number > 0 (a clipping value, a scale).
PositiveReal = Annotated[float, annotated_types.Gt(0)]
#: A real number >= 0 (a threshold, a multiplier, a weight decay).
NonNegativeReal = Annotated[float, annotated_types.Ge(0)]
NonNegativeInt = Annotated[int, annotated_types.Ge(0)]
#: A quantization bit width.
BitWidth = Annotated[int, Range(1, 32)]
#: Parameter or module names, each an exact name or a regular expression.
NamePatterns = Annotated[Sequence[str], pydantic.AfterValidator(_compiles)]


def _with_yaml_numbers(hint: Any) -> Any:
    """``hint`` with every bare ``float`` replaced by :data:`Real`, so all real-valued arguments accept
    YAML's numeric strings the same way."""
    if hint is float:
        return Real
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if not args or origin is typing.Literal:
        return hint
    if origin is Annotated:
        return Annotated[(_with_yaml_numbers(args[0]),) + tuple(args[1:])]
    converted = tuple(_with_yaml_numbers(arg) for arg in args)
    if origin in (Union, types.UnionType):
        return Union[converted]
    return origin[converted if len(converted) > 1 else converted[0]]


@functools.cache
def _adapter(hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(_with_yaml_numbers(hint), config=_CONFIG)


def describe_type(hint: Any) -> str:
    """A reader's name for an annotation: ``a number in [0, 1)``, ``a list of str``, ``'Max' or 'Mean_Abs'``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is float:
        return "a number"
    if origin is Annotated:
        base, *metadata = args
        bounds = [m for m in metadata if isinstance(m, (annotated_types.Interval, annotated_types.Gt,
                                                        annotated_types.Ge, annotated_types.Lt, annotated_types.Le))]
        return describe_type(base) + "".join(_describe_bound(b) for b in bounds)
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in args)
    if hint is Callable or origin is Callable:
        return "a callable"
    if origin in (Union, types.UnionType):
        return " or ".join("None" if a is type(None) else describe_type(a) for a in args)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not args:
            return "a mapping"
        return f"a mapping of {_bare(describe_type(args[0]))} to {_bare(describe_type(args[1]))}"
    if _is_fixed_tuple(origin, args):
        return f"a list [{', '.join(_bare(describe_type(arg)) for arg in args)}]"
    if origin is not None and isinstance(origin, type) and issubclass(origin, Sequence):
        return f"a list of {_bare(describe_type(args[0]))}" if args else "a list"
    if hint is Any:
        return "any value"
    if isinstance(hint, type):
        named = {int: "an integer", bool: "true or false", str: "a string"}.get(hint)
        return named or f"{'an' if hint.__name__[0].lower() in 'aeiou' else 'a'} {hint.__name__}"
    return str(hint)


def _bare(description: str) -> str:
    """``'a number in [0, 1)'`` -> ``'number in [0, 1)'``, for use inside a container's description."""
    return re.sub(r"^an? ", "", description)


def _describe_bound(bound: Any) -> str:
    if isinstance(bound, annotated_types.Interval):
        low = "(" if bound.gt is not None else "["
        high = ")" if bound.lt is not None else "]"
        lo = bound.gt if bound.gt is not None else bound.ge
        hi = bound.lt if bound.lt is not None else bound.le
        return f" in {low}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{high}"
    symbol = {annotated_types.Gt: ">", annotated_types.Ge: ">=", annotated_types.Lt: "<", annotated_types.Le: "<="}
    value = getattr(bound, dataclasses.fields(bound)[0].name)
    return f" {symbol[type(bound)]} {value}"


def check_value(owner: str, argument: str, hint: Any, value: Any) -> Any:
    """Validates ``value`` against ``hint``; returns it normalised (``'1e-3'`` -> 0.001).

    Raises:
        ArgumentError: naming ``owner``, ``argument``, the place inside the value, the expected type and
            the value given; ``.argument`` and ``.location`` tell :mod:`distiller.config` the YAML path.
    """
    try:
        return _adapter(hint).validate_python(value)
    except ValidationError as err:
        errors = [(tuple(part for part in error["loc"] if not isinstance(part, str) or not _is_type_tag(part)), error)
                  for error in err.errors()]
        location, first = max(errors, key=lambda pair: len(pair[0]))  # of a union's members, the one that got furthest
        where = "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in location)
        given = _dig(value, location)
        detail = first["msg"][0].lower() + first["msg"][1:]
        raise ArgumentError(f"{owner}: argument '{argument}{where}' expects {describe_type(_hint_at(hint, location))}, "
                            f"got {given!r} "
                            f"({detail})", argument=argument, location=location) from None


def _hint_at(hint: Any, location: tuple[Any, ...]) -> Any:
    """The annotation of the value at ``location`` inside a value of type ``hint`` (an element of a list,
    a value of a mapping), so a message can say what that element should have been."""
    for part in location:
        while typing.get_origin(hint) is Annotated:
            hint = typing.get_args(hint)[0]
        if typing.get_origin(hint) in (Union, types.UnionType):
            hint = next((arg for arg in typing.get_args(hint) if typing.get_args(arg)), hint)
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if not (isinstance(origin, type) and args):
            return hint
        if _is_fixed_tuple(origin, args):
            hint = args[part] if isinstance(part, int) and 0 <= part < len(args) else hint
        else:
            hint = args[-1] if issubclass(origin, Mapping) else args[0]
    return hint


def _is_fixed_tuple(origin: Any, args: tuple[Any, ...]) -> bool:
    """Whether a hint is ``tuple[X, Y]`` (one type per position), not ``tuple[X, ...]``."""
    return origin is tuple and bool(args) and args[-1] is not Ellipsis


def _is_type_tag(part: str) -> bool:
    """pydantic puts union-member tags (``'float'``, ``'function-before[...]'``) in error locations."""
    return part in {"int", "float", "str", "bool", "list", "tuple", "dict", "none", "literal"} or "[" in part


def _dig(value: Any, location: tuple[Any, ...]) -> Any:
    for part in location:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            break
    return value


def validated(func: _F) -> _F:
    """Decorator: checks every annotated argument of ``func`` (usually an ``__init__``) on each call.

    Arguments without an annotation, and ``self``, are passed through unchecked. A wrong *number* or
    *name* of arguments is Python's own ``TypeError``, as for any call.
    """
    signature = inspect.signature(func)
    is_init = func.__name__ == "__init__"
    owner = func.__qualname__.split(".")[0] if is_init else func.__qualname__
    hints: dict[str, Any] = {}

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not hints:  # resolved on first call: annotations may name classes defined after the function
            hints.update((name, hint) for name, hint in typing.get_type_hints(func, include_extras=True).items()
                         if name != "return")
            hints.setdefault("", None)
        bound = signature.bind(*args, **kwargs)
        who = type(args[0]).__name__ if is_init and args else owner  # a subclass that inherits __init__
        for name, value in bound.arguments.items():
            hint = hints.get(name)
            if hint is None:
                continue
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                bound.arguments[name] = tuple(check_value(who, f"{name}[{i}]", hint, v) for i, v in enumerate(value))
            elif kind is inspect.Parameter.VAR_KEYWORD:
                bound.arguments[name] = {k: check_value(who, k, hint, v) for k, v in value.items()}
            else:
                bound.arguments[name] = check_value(who, name, hint, value)
        return func(*bound.args, **bound.kwargs)

    wrapper.__signature__ = signature  # type: ignore[attr-defined]  # inspect.signature(cls) sees the real one
    return typing.cast(_F, wrapper)


_R = TypeVar("_R", bound=type)


@dataclass_transform(frozen_default=True)
def record(cls: _R) -> _R:
    """Class decorator: a frozen dataclass whose fields are checked against their annotations on
    construction (the same checks as :func:`validated`); a ``__post_init__`` the class defines runs after
    that, for relations between fields."""
    relations = cls.__dict__.get("__post_init__")
    hints: dict[str, Any] = {}

    def __post_init__(self: Any) -> None:  # noqa: N807  (installed as the dataclass's hook)
        if not hints:
            hints.update(typing.get_type_hints(cls, include_extras=True))
        for field in dataclasses.fields(self):
            value = check_value(cls.__name__, field.name, hints[field.name], getattr(self, field.name))
            object.__setattr__(self, field.name, value)
        if relations is not None:
            relations(self)

    cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
    return typing.cast(_R, dataclasses.dataclass(frozen=True)(cls))


def build_record(cls: type[_T], values: Mapping[str, Any], owner: str) -> _T:
    """``cls(**values)`` for a :func:`record` class, with unknown keys reported like bad values.

    Raises:
        ArgumentError: an unknown key (with the closest valid ones) or a bad value; ``.argument`` names it.
    """
    valid = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in values:
        if key not in valid:
            hint = suggest(key, valid)
            raise ArgumentError(f"{owner}: unknown argument '{key}'" + (f"; did you mean {hint}?" if hint else "")
                                + f" (valid: {', '.join(valid) or 'none'})", argument=key)
    return cls(**values)
