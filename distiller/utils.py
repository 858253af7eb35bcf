"""Helpers for finding modules and parameters by name, DataParallel name normalisation and seeding."""
from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional, TypeVar, Union

import numpy as np
import torch

from .errors import UnmatchedNameError

msglogger = logging.getLogger(__name__)

_PARALLEL_PREFIX = "module."
_V = TypeVar("_V")


def normalize_module_name(layer_name: str) -> str:
    """Removes the ``module.`` components that DataParallel/DDP add to names (``module.conv1`` -> ``conv1``)."""
    parts = [part for part in layer_name.split(".") if part != "module"]
    return ".".join(parts) if parts or layer_name == "" else layer_name


def denormalize_module_name(parallel_model: torch.nn.Module, normalized_name: str) -> str:
    """Returns the name that ``normalized_name`` has in ``parallel_model`` (adding ``module.`` where the model
    has it)."""
    for name, _ in parallel_model.named_modules():
        if normalize_module_name(name) == normalized_name:
            return name
    for name, _ in parallel_model.named_parameters():
        if normalize_module_name(name) == normalized_name:
            return name
    return normalized_name


def normalize_state_dict_keys(state_dict: Mapping[str, _V], add_prefix: bool = False) -> dict[str, _V]:
    """Returns a copy of ``state_dict`` with ``module.`` prefixes removed (or added when ``add_prefix``)."""
    out: dict[str, _V] = type(state_dict)() if isinstance(state_dict, dict) else {}
    for key, value in state_dict.items():
        key = normalize_module_name(key)
        out[_PARALLEL_PREFIX + key if add_prefix else key] = value
    return out


def model_is_parallel(model: torch.nn.Module) -> bool:
    """Whether ``model`` is wrapped in ``DataParallel`` or ``DistributedDataParallel``."""
    return isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel))


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without tensors)."""
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def find_module_by_fq_name(model: torch.nn.Module, fq_mod_name: str) -> Optional[torch.nn.Module]:
    """Returns the module named ``fq_mod_name`` (``module.`` prefixes ignored), or None."""
    wanted = normalize_module_name(fq_mod_name)
    for name, module in model.named_modules():
        if normalize_module_name(name) == wanted:
            return module
    return None


def model_find_module(model: torch.nn.Module, module_to_find: str) -> Optional[torch.nn.Module]:
    """Returns the module named ``module_to_find`` (``module.`` prefixes ignored), or None."""
    return find_module_by_fq_name(model, module_to_find)


def model_find_module_name(model: torch.nn.Module, module_to_find: torch.nn.Module) -> Optional[str]:
    """Returns the name of ``module_to_find`` inside ``model``, or None."""
    for name, module in model.named_modules():
        if module is module_to_find:
            return name
    return None


def model_find_param(model: torch.nn.Module, param_to_find_name: str) -> Optional[torch.nn.Parameter]:
    """Returns the parameter named ``param_to_find_name`` (``module.`` prefixes ignored), or None."""
    wanted = normalize_module_name(param_to_find_name)
    for name, param in model.named_parameters():
        if normalize_module_name(name) == wanted:
            return param
    return None


def model_find_param_name(model: torch.nn.Module, param_to_find: torch.Tensor) -> Optional[str]:
    """Returns the name of the parameter tensor ``param_to_find``, or None."""
    for name, param in model.named_parameters():
        if param is param_to_find:
            return name
    return None


def match_names(patterns: Iterable[str], names: Iterable[str], kind: str = "parameter") -> dict[str, list[str]]:
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
    candidates = list(names)
    normalized = [normalize_module_name(n) for n in candidates]
    resolved: dict[str, list[str]] = {}
    for pattern in patterns:
        if pattern == "*":
            resolved[pattern] = list(candidates)
            continue
        wanted = normalize_module_name(str(pattern))
        hits = [n for n, norm in zip(candidates, normalized) if norm == wanted]
        if not hits:
            try:
                regex = re.compile(wanted)
            except re.error as err:
                raise UnmatchedNameError(pattern, candidates, kind) from err
            hits = [n for n, norm in zip(candidates, normalized) if regex.fullmatch(norm)]
        if not hits:
            raise UnmatchedNameError(pattern, candidates, kind)
        resolved[pattern] = hits
    return resolved


def pattern_lookup(mapping: Mapping[str, _V], name: str) -> Optional[_V]:
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


def set_seed(seed: int) -> None:
    """Seeds Python, NumPy and torch (CPU and every CUDA device) random number generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


#: The cuBLAS workspace settings with which cuBLAS computes deterministically (the two torch accepts).
DETERMINISTIC_CUBLAS_CONFIGS = (":4096:8", ":16:8")


def set_deterministic(seed: int = 0) -> None:
    """Seeds every RNG and makes torch compute reproducibly (slower).

    Sets ``torch.use_deterministic_algorithms(True)`` in strict mode: an operation that has no
    deterministic kernel raises ``RuntimeError`` naming it instead of silently varying. Also sets
    ``torch.backends.cudnn.deterministic = True`` and ``benchmark = False`` (no run-time choice of
    convolution algorithms) and ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which cuBLAS reads once, when it
    starts: so call this before any CUDA work.

    What is guaranteed where (torch 2.14):

    * **CPU**: bit-identical results for the same program, seed, torch build, machine type and number
      of threads (``torch.get_num_threads()``: reductions split their work by thread).
    * **CUDA**: bit-identical results on the same GPU model with the same driver, CUDA, cuDNN and
      torch; ops without a deterministic CUDA kernel raise. In a training step (forward, cross-entropy,
      backward) of distiller's CIFAR-10, MNIST and ImageNet models and of torchvision's classifiers
      (traced op by op with torch 2.14; the largest variant of each family and MaxViT not traced), the
      only such op is the backward pass of ``nn.AdaptiveAvgPool2d`` with an output larger than 1x1
      (``adaptive_avg_pool2d_backward_cuda``): AlexNet, AlexNet-BN and the torchvision VGGs cannot
      train under ``set_deterministic`` on CUDA. A 1x1 output (ResNets, MobileNets and the others) is
      computed as a mean, which is deterministic; so is ``CrossEntropyLoss`` on ``(N, C)`` logits (only
      ``nll_loss2d``, for per-pixel targets, has no deterministic CUDA kernel).
    * Not guaranteed across devices (CPU vs. GPU, one GPU model vs. another), torch versions or thread
      counts. TF32 settings are left alone: TF32 kernels are deterministic too; they change precision,
      not reproducibility.

    DataLoader workers are seeded by the loaders themselves (see
    :func:`distiller.apputils.load_data` with ``deterministic=True``).

    Args:
        seed: the seed of Python's, NumPy's and torch's generators.
    Raises:
        RuntimeError: CUDA is already initialised and ``CUBLAS_WORKSPACE_CONFIG`` is not one of
            :data:`DETERMINISTIC_CUBLAS_CONFIGS` (cuBLAS may already run with another workspace): call
            ``set_deterministic`` before any CUDA work, or export ``CUBLAS_WORKSPACE_CONFIG=:4096:8``.
    """
    _set_deterministic_cublas_workspace()
    set_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _set_deterministic_cublas_workspace() -> None:
    current = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if current in DETERMINISTIC_CUBLAS_CONFIGS:
        return
    if torch.cuda.is_initialized():
        raise RuntimeError(f"set_deterministic() was called after CUDA was initialised with CUBLAS_WORKSPACE_CONFIG="
                           f"{current!r}: cuBLAS reads that setting only when it starts, so matrix products may not "
                           f"be reproducible. Call set_deterministic() before any CUDA work, or export "
                           f"CUBLAS_WORKSPACE_CONFIG={DETERMINISTIC_CUBLAS_CONFIGS[0]} before starting Python")
    if current is not None:
        msglogger.warning("CUBLAS_WORKSPACE_CONFIG=%r is not deterministic: replaced by %r", current,
                          DETERMINISTIC_CUBLAS_CONFIGS[0])
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = DETERMINISTIC_CUBLAS_CONFIGS[0]


def volume(tensor: Union[torch.Tensor, Sequence[int]]) -> int:
    """Number of elements of a tensor, or of a shape."""
    shape = tensor.shape if isinstance(tensor, torch.Tensor) else tensor
    return int(np.prod(tuple(shape), dtype=np.int64))


def to_np(var: torch.Tensor) -> np.ndarray:
    """The values of tensor ``var`` as a NumPy array (detached, on the CPU)."""
    return var.detach().cpu().numpy()


# Distiller defined these in distiller.utils; they live in the modules named and stay importable from here.
from .data_loggers.logger import (log_activation_statistics, log_model_buffers,  # noqa: E402
                                  log_training_progress, log_weights_sparsity)
from .metrics import (density, density_2D, density_3D, density_ch, density_cols, density_rows,  # noqa: E402
                      model_numel, model_params_size, model_params_stats, model_sparsity, sparsity, sparsity_2D,
                      sparsity_3D, sparsity_blocks, sparsity_ch, sparsity_cols, sparsity_matrix, sparsity_rows)
from .metrics.channels import (activation_channels_apoz, activation_channels_l1,  # noqa: E402
                               activation_channels_means, non_zero_channels, norm_filters)
from .model_tools import (assign_layer_fq_names, convert_tensors_recursively_to, get_dummy_input,  # noqa: E402
                          get_nonparallel_clone_model, has_children, make_non_parallel_copy, model_setattr,
                          optimizer_device_name, param_name_2_module_name, set_model_input_shape_attr)
from .pyutils import (MutableNamedTuple, filter_kwargs, float_range_argparse_checker, is_scalar,  # noqa: E402
                      pretty_int, size2str, size_to_str, yaml_ordered_load, yaml_ordered_save)

__all__ = [
    # defined here
    "msglogger", "normalize_module_name", "denormalize_module_name", "normalize_state_dict_keys", "model_is_parallel",
    "model_device", "find_module_by_fq_name", "model_find_module", "model_find_module_name", "model_find_param",
    "model_find_param_name", "match_names", "pattern_lookup", "set_seed", "DETERMINISTIC_CUBLAS_CONFIGS",
    "set_deterministic", "volume", "to_np",
    # re-exported (Distiller's distiller.utils names)
    "log_activation_statistics", "log_model_buffers", "log_training_progress", "log_weights_sparsity",
    "density", "density_2D", "density_3D", "density_ch", "density_cols", "density_rows", "model_numel",
    "model_params_size", "model_params_stats", "model_sparsity", "sparsity", "sparsity_2D", "sparsity_3D",
    "sparsity_blocks", "sparsity_ch", "sparsity_cols", "sparsity_matrix", "sparsity_rows",
    "activation_channels_apoz", "activation_channels_l1", "activation_channels_means", "non_zero_channels",
    "norm_filters", "assign_layer_fq_names", "convert_tensors_recursively_to", "get_dummy_input",
    "get_nonparallel_clone_model", "has_children", "make_non_parallel_copy", "model_setattr", "optimizer_device_name",
    "param_name_2_module_name", "set_model_input_shape_attr", "MutableNamedTuple", "filter_kwargs",
    "float_range_argparse_checker", "is_scalar", "pretty_int", "size2str", "size_to_str", "yaml_ordered_load",
    "yaml_ordered_save",
]
