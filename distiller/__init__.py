"""distiller: a PyTorch library for neural-network compression research.

Importing it has no side effects beyond registering the library's classes in
:mod:`distiller.registry`: no CUDA initialisation, no logging configuration, no output.
"""
from ._version import __version__
from . import (apputils, data_loggers, graph, lr_schedulers, metrics, models, modules, norms, pruning, quantization,
               registry, regularization, summaries, thinning, thresholding, utils)
from .config import describe_schedule, dict_config, file_config
from .errors import (ArgumentError, CheckpointError, InputFileError, MissingDependencyError, ScheduleError,
                     UnmatchedNameError, UserError)
from .metrics import (density, density_2D, density_3D, density_ch, density_cols, density_rows, model_numel,
                      model_params_size, model_params_stats, model_sparsity, sparsity, sparsity_2D, sparsity_3D,
                      sparsity_blocks, sparsity_ch, sparsity_cols, sparsity_rows)
from .policy import (LossComponent, LRPolicy, PolicyLoss, PruningPolicy, QuantizationPolicy, RegularizationPolicy,
                     ScheduledTrainingPolicy)
from .scheduler import CompressionScheduler, ParameterMasker, create_model_masks_dict
from .summaries import model_macs, model_params, model_performance_summary
from .thresholding import group_threshold_mask, threshold_mask
from .utils import (denormalize_module_name, find_module_by_fq_name, model_device, model_find_module,
                    model_find_module_name, model_find_param, model_find_param_name, normalize_module_name,
                    set_deterministic, set_seed, volume)

__all__ = [
    "__version__",
    # subpackages
    "apputils", "data_loggers", "graph", "lr_schedulers", "metrics", "models", "modules", "norms", "pruning",
    "quantization", "registry", "regularization", "summaries", "thinning", "thresholding", "utils",
    # scheduling
    "CompressionScheduler", "ParameterMasker", "create_model_masks_dict",
    "ScheduledTrainingPolicy", "PruningPolicy", "RegularizationPolicy", "QuantizationPolicy", "LRPolicy",
    "PolicyLoss", "LossComponent",
    "file_config", "dict_config", "describe_schedule",
    # the user-error family (bad input; applications exit with status 2)
    "UserError", "ScheduleError", "ArgumentError", "InputFileError", "CheckpointError", "MissingDependencyError",
    "UnmatchedNameError",
    # metrics and summaries
    "sparsity", "density", "sparsity_2D", "density_2D", "sparsity_3D", "density_3D", "sparsity_ch", "density_ch",
    "sparsity_rows", "density_rows", "sparsity_cols", "density_cols", "sparsity_blocks", "model_sparsity",
    "model_numel", "model_params_size", "model_params_stats", "model_performance_summary", "model_macs",
    "model_params", "threshold_mask", "group_threshold_mask",
    # utilities
    "set_seed", "set_deterministic", "normalize_module_name", "denormalize_module_name", "find_module_by_fq_name",
    "model_find_module", "model_find_module_name", "model_find_param", "model_find_param_name", "model_device",
    "volume",
]
