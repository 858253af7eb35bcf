"""Helpers for finding modules and parameters by name, DataParallel name normalisation and seeding."""
import os
import random
import re

import numpy as np
import torch

from .errors import UnmatchedNameError

_PARALLEL_PREFIX = "module."


def normalize_module_name(name):
    """Removes the ``module.`` components that DataParallel/DDP add to names (``module.conv1`` -> ``conv1``)."""
    parts = [part for part in name.split(".") if part != "module"]
    return ".".join(parts) if parts or name == "" else name


def denormalize_module_name(model, normalized_name):
    """Returns the name that ``normalized_name`` has in ``model`` (adding ``module.`` where the model has it)."""
    for name, _ in model.named_modules():
        if normalize_module_name(name) == normalized_name:
            return name
    for name, _ in model.named_parameters():
        if normalize_module_name(name) == normalized_name:
            return name
    return normalized_name


def normalize_state_dict_keys(state_dict, add_prefix=False):
    """Returns a copy of ``state_dict`` with ``module.`` prefixes removed (or added when ``add_prefix``)."""
    out = type(state_dict)() if isinstance(state_dict, dict) else {}
    for key, value in state_dict.items():
        key = normalize_module_name(key)
        out[_PARALLEL_PREFIX + key if add_prefix else key] = value
    return out


def model_is_parallel(model):
    return isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel))


def model_device(model):
    """The device of the model's first parameter or buffer (CPU for a model without tensors)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def find_module_by_fq_name(model, fq_name):
    """Returns the module named ``fq_name`` (``module.`` prefixes ignored), or None."""
    wanted = normalize_module_name(fq_name)
    for name, module in model.named_modules():
        if normalize_module_name(name) == wanted:
            return module
    return None


def model_find_module(model, module_name):
    return find_module_by_fq_name(model, module_name)


def model_find_module_name(model, module_to_find):
    """Returns the name of ``module_to_find`` inside ``model``, or None."""
    for name, module in model.named_modules():
        if module is module_to_find:
            return name
    return None


def model_find_param(model, param_name):
    """Returns the parameter named ``param_name`` (``module.`` prefixes ignored), or None."""
    wanted = normalize_module_name(param_name)
    for name, param in model.named_parameters():
        if normalize_module_name(name) == wanted:
            return param
    return None


def model_find_param_name(model, param_to_find):
    """Returns the name of the parameter tensor ``param_to_find``, or None."""
    for name, param in model.named_parameters():
        if param is param_to_find:
            return name
    return None


def match_names(patterns, names, kind="parameter"):
    """Resolves exact names and regular expressions against ``names``.

    A pattern matches a name when it equals it or fully matches it as a regular expression, ignoring
    DataParallel ``module.`` prefixes on both sides; ``'*'`` matches every name.

    Args:
        patterns: iterable of names / regular expressions.
        names: the candidate names (e.g. ``[n for n, _ in model.named_parameters()]``).
        kind: what the names are, for the error message.
    Returns:
        dict pattern -> list of matching names (in ``names`` order).
    Raises:
        UnmatchedNameError: for the first pattern that matches nothing (or is not a valid regex).
    """
    names = list(names)
    normalized = [normalize_module_name(n) for n in names]
    resolved = {}
    for pattern in patterns:
        if pattern == "*":
            resolved[pattern] = list(names)
            continue
        wanted = normalize_module_name(str(pattern))
        hits = [n for n, norm in zip(names, normalized) if norm == wanted]
        if not hits:
            try:
                regex = re.compile(wanted)
            except re.error as err:
                raise UnmatchedNameError(pattern, names, kind) from err
            hits = [n for n, norm in zip(names, normalized) if regex.fullmatch(norm)]
        if not hits:
            raise UnmatchedNameError(pattern, names, kind)
        resolved[pattern] = hits
    return resolved


def pattern_lookup(mapping, name):
    """Returns ``mapping``'s value for ``name``: an exact key, else the first key that fully matches it as
    a regex, else the ``'*'`` entry, else None (``module.`` prefixes ignored)."""
    wanted = normalize_module_name(name)
    for key, value in mapping.items():
        if key != "*" and normalize_module_name(str(key)) == wanted:
            return value
    for key, value in mapping.items():
        if key == "*":
            continue
        try:
            if re.fullmatch(normalize_module_name(str(key)), wanted):
                return value
        except re.error:
            continue
    return mapping.get("*")


def set_seed(seed):
    """Seeds Python, NumPy and torch (all devices) random number generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_deterministic(seed=0):
    """Seeds every RNG and makes torch choose deterministic algorithms (slower, reproducible)."""
    set_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def volume(tensor_or_shape):
    """Number of elements of a tensor or shape."""
    shape = tensor_or_shape.shape if isinstance(tensor_or_shape, torch.Tensor) else tensor_or_shape
    return int(np.prod(tuple(shape), dtype=np.int64))


def to_np(tensor):
    return tensor.detach().cpu().numpy()
