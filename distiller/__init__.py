"""distiller: a PyTorch library for neural-network compression research.

Importing it has no side effects beyond registering the library's classes in
:mod:`distiller.registry`: no CUDA initialisation, no logging configuration, no output.
"""
from ._version import __version__
from . import apputils, lr_schedulers, pruning, registry, utils
from .config import describe_schedule, dict_config, file_config
from .errors import ScheduleError, UnmatchedNameError
from .policy import (LossComponent, LRPolicy, PolicyLoss, PruningPolicy, QuantizationPolicy, RegularizationPolicy,
                     ScheduledTrainingPolicy)
from .scheduler import CompressionScheduler, ParameterMasker, create_model_masks_dict
from .utils import (denormalize_module_name, find_module_by_fq_name, model_device, model_find_module,
                    model_find_module_name, model_find_param, model_find_param_name, normalize_module_name,
                    set_deterministic, set_seed, volume)

__all__ = [
    "__version__", "apputils", "registry", "utils", "pruning", "lr_schedulers",
    "CompressionScheduler", "ParameterMasker", "create_model_masks_dict",
    "ScheduledTrainingPolicy", "PruningPolicy", "RegularizationPolicy", "QuantizationPolicy", "LRPolicy",
    "PolicyLoss", "LossComponent",
    "file_config", "dict_config", "describe_schedule", "ScheduleError", "UnmatchedNameError",
    "set_seed", "set_deterministic", "normalize_module_name", "denormalize_module_name", "find_module_by_fq_name",
    "model_find_module", "model_find_module_name", "model_find_param", "model_find_param_name", "model_device",
    "volume",
]
