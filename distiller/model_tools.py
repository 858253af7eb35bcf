"""Helpers that act on models, as Distiller exposed them from ``distiller.utils``: DataParallel removal,
dotted-name attribute setting, example inputs and tensor moves.

All are importable from :mod:`distiller.utils` (and the top-level package) under Distiller's names.
"""
from __future__ import annotations

import copy
import numbers
import typing
from typing import Any, Optional, Sequence, TypeGuard, Union

import torch
from torch import nn

from .errors import ArgumentError
from .models.registry import dataset_input_shape

__all__ = ["has_children", "make_non_parallel_copy", "get_nonparallel_clone_model", "assign_layer_fq_names",
           "model_setattr", "param_name_2_module_name", "optimizer_device_name", "convert_tensors_recursively_to",
           "get_dummy_input", "set_model_input_shape_attr"]

_PARALLEL_TYPES = (nn.DataParallel, nn.parallel.DistributedDataParallel)

Shape = Sequence[int]
NestedShape = Union[Shape, Sequence["NestedShape"]]


def has_children(module: nn.Module) -> bool:
    """True when ``module`` has at least one direct submodule."""
    return next(module.children(), None) is not None


def _strip_parallel(module: nn.Module) -> nn.Module:
    """Replaces, in place, every DataParallel/DDP wrapper under ``module`` by the module it wraps."""
    for name, child in module.named_children():
        while isinstance(child, _PARALLEL_TYPES):
            child = child.module
        setattr(module, name, _strip_parallel(child))
    return module


def make_non_parallel_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` without any ``DataParallel``/``DistributedDataParallel`` wrapper, at any
    depth, so its module names have no ``module.`` components. ``model`` itself is not changed."""
    while isinstance(model, _PARALLEL_TYPES):
        model = model.module
    return _strip_parallel(copy.deepcopy(model))


#: Distiller's other name for :func:`make_non_parallel_copy`.
get_nonparallel_clone_model = make_non_parallel_copy


def assign_layer_fq_names(container: nn.Module, name: Optional[str] = None) -> None:
    """Sets ``distiller_name`` on every module of ``container`` to its fully-qualified name (prefixed by
    ``name.`` when ``name`` is given; the container itself gets ``name``, or ``''``).

    The attribute is what code written for Distiller reads; distiller itself finds modules by name with
    :func:`distiller.find_module_by_fq_name`, which needs no attribute.
    """
    for module_name, module in container.named_modules():
        parts = [part for part in (name, module_name) if part]
        module.distiller_name = ".".join(parts)


def _owner_and_attribute(model: nn.Module, attr_name: str) -> tuple[Any, str]:
    """The object that holds the last component of the dotted ``attr_name``, and that component's name."""
    owner_path, _, attribute = attr_name.rpartition(".")
    owner: Any = model
    for part in owner_path.split(".") if owner_path else ():
        try:
            owner = getattr(owner, part)
        except AttributeError:
            raise ArgumentError(f"model_setattr: '{attr_name}': the model has no '{part}' on the way "
                                f"(in {type(owner).__name__})") from None
    return owner, attribute


def model_setattr(model: nn.Module, attr_name: str, val: Any, register: bool = False) -> None:
    """Sets the attribute with the dotted name ``attr_name`` (e.g. ``'layer1.0.conv1'``, ``'fc.bias'``).

    Args:
        model: the root module.
        attr_name: dotted path; every component before the last must exist.
        val: the new value (a module, a parameter, a tensor, or anything else).
        register: register ``val`` explicitly when it is a tensor: a ``nn.Parameter`` as a parameter, any
            other tensor as a buffer (plain ``setattr`` keeps a plain tensor out of ``state_dict()``).
            Modules and parameters are registered by ``setattr`` anyway.
    Raises:
        ArgumentError: a component of the path does not exist.
    """
    owner, attribute = _owner_and_attribute(model, attr_name)
    if register and isinstance(owner, nn.Module) and isinstance(val, torch.Tensor):
        is_parameter = isinstance(val, nn.Parameter)
        if hasattr(owner, attribute) and attribute not in (owner._parameters if is_parameter else owner._buffers):
            delattr(owner, attribute)  # a plain attribute or another kind of member would block registration
        if isinstance(val, nn.Parameter):
            owner.register_parameter(attribute, val)
        else:
            owner.register_buffer(attribute, val)
        return
    setattr(owner, attribute, val)


def param_name_2_module_name(param_name: str) -> str:
    """The name of the module owning parameter ``param_name``: ``'layer1.0.conv1.weight'`` -> ``'layer1.0.conv1'``."""
    return param_name.rpartition(".")[0]


def optimizer_device_name(opt: torch.optim.Optimizer) -> str:
    """The device of the first parameter ``opt`` updates, as a string (e.g. ``'cpu'``, ``'cuda:0'``).

    Raises:
        ArgumentError: the optimizer has no parameters.
    """
    for group in opt.param_groups:
        for param in group["params"]:
            return str(param.device)
    raise ArgumentError("optimizer_device_name: the optimizer has no parameters")


def convert_tensors_recursively_to(val: Any, *args: Any, **kwargs: Any) -> Any:
    """Applies ``tensor.to(*args, **kwargs)`` to every tensor in ``val``, through nested tuples and lists
    (their types kept); other values are returned unchanged."""
    if isinstance(val, torch.Tensor):
        return val.to(*args, **kwargs)
    if isinstance(val, (tuple, list)):
        return type(val)(convert_tensors_recursively_to(item, *args, **kwargs) for item in val)
    return val


def _is_shape(shape: Any) -> TypeGuard[Shape]:
    return isinstance(shape, (tuple, list, torch.Size)) and all(isinstance(d, numbers.Integral) for d in shape)


def _check_nested_shape(input_shape: Any) -> None:
    if _is_shape(input_shape) and len(input_shape) > 0:
        return
    if isinstance(input_shape, (tuple, list)) and input_shape:
        for shape in input_shape:
            _check_nested_shape(shape)
        return
    raise ArgumentError(f"input_shape must be a tuple of ints, or a (nested) tuple of such tuples, got {input_shape!r}")


def _input_shape(dataset: Optional[str], input_shape: Optional[NestedShape]) -> NestedShape:
    if dataset is not None and input_shape is None:
        return dataset_input_shape(dataset)
    if input_shape is not None and dataset is None:
        _check_nested_shape(input_shape)
        return input_shape
    raise ArgumentError("give exactly one of dataset (e.g. 'cifar10') and input_shape (e.g. (1, 3, 32, 32))")


def _random_inputs(shape: NestedShape, device: Optional[Union[str, torch.device]]) -> Any:
    if _is_shape(shape):
        return torch.randn(tuple(int(d) for d in shape), device=device)
    return tuple(_random_inputs(s, device) for s in typing.cast(Sequence[NestedShape], shape))


def get_dummy_input(dataset: Optional[str] = None, device: Optional[Union[str, torch.device]] = None,
                    input_shape: Optional[NestedShape] = None) -> Any:
    """A random example input for tracing, summaries and thinning.

    Args:
        dataset: a dataset name (``'cifar10'``, ``'digits'``, ``'mnist'``, ``'imagenet'``): a batch of one
            image of its shape.
        device: where to create the tensors (default: CPU).
        input_shape: instead of ``dataset``, a shape such as ``(1, 3, 32, 32)``, or a (nested) tuple of shapes
            for a model with several inputs.
    Returns:
        a tensor of standard-normal values, or a (nested) tuple of them mirroring ``input_shape``.
    Raises:
        ArgumentError: neither or both of ``dataset`` and ``input_shape``, an unknown dataset or a malformed
            shape.

    Example:
        >>> get_dummy_input('cifar10').shape
        torch.Size([1, 3, 32, 32])
        >>> [t.shape for t in get_dummy_input(input_shape=((1, 4), (1, 2)))]
        [torch.Size([1, 4]), torch.Size([1, 2])]
    """
    return _random_inputs(_input_shape(dataset, input_shape), device)


def set_model_input_shape_attr(model: nn.Module, dataset: Optional[str] = None,
                               input_shape: Optional[NestedShape] = None) -> None:
    """Sets ``model.input_shape`` from ``dataset`` or ``input_shape`` (arguments as :func:`get_dummy_input`),
    unless the model already has one; code written for Distiller reads it to build example inputs."""
    if getattr(model, "input_shape", None) is None:
        shape = _input_shape(dataset, input_shape)
        # torch types every Module attribute as Tensor | Module; this one is a plain (shape) attribute
        model.input_shape = tuple(shape) if _is_shape(shape) else shape  # type: ignore[assignment]
