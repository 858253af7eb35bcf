"""Plain-Python helpers that Distiller exposed from ``distiller.utils``: shape and number formatting,
order-preserving YAML, an attribute-access dict, keyword filtering and an argparse range check.

All are importable from :mod:`distiller.utils` (and the top-level package) under Distiller's names.
"""
from __future__ import annotations

import argparse
import inspect
import numbers
from collections import OrderedDict
from typing import IO, Any, Callable, Mapping, Union

import torch
import yaml

from .errors import ArgumentError

__all__ = ["size_to_str", "size2str", "pretty_int", "MutableNamedTuple", "yaml_ordered_load", "yaml_ordered_save",
           "filter_kwargs", "is_scalar", "float_range_argparse_checker"]


def size_to_str(torch_size: Union[torch.Size, tuple]) -> str:
    """Formats a shape as Distiller did: ``torch.Size([64, 3, 7, 7])`` -> ``'(64, 3, 7, 7)'``."""
    return "(" + ", ".join(str(int(dim)) for dim in torch_size) + ")"


def size2str(torch_size: Union[torch.Size, tuple, torch.Tensor]) -> str:
    """Formats a shape, or the shape of a tensor, as ``'(d0, d1, ...)'``.

    Raises:
        TypeError: for anything that is neither a tensor nor a sequence of integers.
    """
    if isinstance(torch_size, torch.Tensor):
        return size_to_str(torch_size.shape)
    if isinstance(torch_size, (torch.Size, tuple, list)) and all(isinstance(d, numbers.Integral) for d in torch_size):
        return size_to_str(torch_size)
    raise TypeError(f"size2str expects a torch.Size, a tuple of ints or a tensor, got {type(torch_size).__name__}")


def pretty_int(i: int) -> str:
    """An integer with thousands separators: ``1234567`` -> ``'1,234,567'``."""
    return f"{i:,}"


class MutableNamedTuple(dict):
    """A dict whose keys are also attributes (``t.top1`` is ``t['top1']``), as Distiller's app used for
    per-epoch statistics.

    Example:
        >>> stats = MutableNamedTuple({'top1': 0.0, 'epoch': 0})
        >>> stats.top1 = 71.5
        >>> stats['top1'], stats.epoch
        (71.5, 0)
    """

    def __init__(self, init_dict: Mapping[str, Any]) -> None:
        super().__init__(init_dict)

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {key!r}; fields: {sorted(self)}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        try:
            del self[key]
        except KeyError:
            raise AttributeError(key) from None


def yaml_ordered_load(stream: Union[str, IO], Loader: type = yaml.SafeLoader,
                      object_pairs_hook: Callable = OrderedDict) -> Any:
    """Loads YAML with every mapping built by ``object_pairs_hook`` (an ``OrderedDict`` by default), in file order.

    Args:
        stream: YAML text or an open file.
        Loader: the PyYAML loader class to extend (a subclass is made; the class itself is not changed).
            Distiller's default was ``yaml.Loader``; ``SafeLoader`` is the default here, since YAML tags that
            construct arbitrary Python objects have no place in a schedule.
        object_pairs_hook: called with the list of ``(key, value)`` pairs of each mapping.
    """
    class OrderedLoader(Loader):
        pass

    def construct_mapping(loader: yaml.Loader, node: yaml.MappingNode) -> Any:
        loader.flatten_mapping(node)
        return object_pairs_hook(loader.construct_pairs(node))

    OrderedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return yaml.load(stream, OrderedLoader)


def yaml_ordered_save(fname: str, ordered_dict: Mapping) -> None:
    """Writes ``ordered_dict`` to the YAML file ``fname`` as plain mappings, keeping the key order
    (readable back with :func:`yaml_ordered_load`, or with ``yaml.safe_load`` as plain dicts)."""
    class OrderedDumper(yaml.SafeDumper):
        pass

    def represent_mapping(dumper: yaml.SafeDumper, data: Mapping) -> yaml.MappingNode:
        return dumper.represent_mapping(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, data.items())

    OrderedDumper.add_representer(OrderedDict, represent_mapping)
    OrderedDumper.add_representer(dict, represent_mapping)
    with open(fname, "w") as f:
        yaml.dump(ordered_dict, f, Dumper=OrderedDumper, default_flow_style=False)


def filter_kwargs(dict_to_filter: Mapping[str, Any], function_to_call: Callable) -> tuple[dict, dict]:
    """Splits ``dict_to_filter`` into the keyword arguments ``function_to_call`` accepts and the others.

    Returns:
        ``(valid, invalid)`` dicts. A function taking ``**kwargs`` accepts every key.
    """
    parameters = inspect.signature(function_to_call).parameters
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return dict(dict_to_filter), {}
    accepted = {name for name, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    valid = {k: v for k, v in dict_to_filter.items() if k in accepted}
    invalid = {k: v for k, v in dict_to_filter.items() if k not in accepted}
    return valid, invalid


def is_scalar(val: Any) -> bool:
    """True for a Python/NumPy number or a tensor with a single element (``dim() == 0`` or one value)."""
    if isinstance(val, torch.Tensor):
        return val.numel() == 1
    return isinstance(val, numbers.Number)


def float_range_argparse_checker(min_val: float = 0., max_val: float = 1., exc_min: bool = False,
                                 exc_max: bool = False) -> Callable[[str], float]:
    """Returns an argparse ``type=`` that parses a float and checks it lies in the range.

    Args:
        min_val, max_val: the range's ends.
        exc_min, exc_max: exclude the lower / upper end.
    Raises:
        ArgumentError: when ``min_val > max_val`` (the returned checker raises
            ``argparse.ArgumentTypeError`` for a value outside the range, which argparse reports).

    Example:
        >>> parser.add_argument('--sparsity', type=float_range_argparse_checker(exc_max=True))
    """
    if min_val > max_val:
        raise ArgumentError(f"float_range_argparse_checker: min_val={min_val} is greater than max_val={max_val}")
    interval = f"{'(' if exc_min else '['}{min_val}, {max_val}{')' if exc_max else ']'}"

    def checker(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        below = value < min_val or (exc_min and value == min_val)
        above = value > max_val or (exc_max and value == max_val)
        if below or above:
            raise argparse.ArgumentTypeError(f"{text} is outside the range {interval}")
        return value

    checker.__name__ = "float in " + interval
    return checker
