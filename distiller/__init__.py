"""distiller: a PyTorch library for neural-network compression research.

Importing it has no side effects beyond registering the library's classes in
:mod:`distiller.registry`: no CUDA initialisation, no logging configuration, no output.
"""
from ._version import __version__
from . import (apputils, data_loggers, graph, lr_schedulers, metrics, models, modules, norms, pruning, quantization,
               registry, regularization, summaries, thinning, thresholding, transformers, utils)
from .config import config_component_from_file_by_class, describe_schedule, dict_config, file_config
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
    "quantization", "registry", "regularization", "summaries", "thinning", "thresholding", "transformers", "utils",
    # scheduling
    "CompressionScheduler", "ParameterMasker", "create_model_masks_dict",
    "ScheduledTrainingPolicy", "PruningPolicy", "RegularizationPolicy", "QuantizationPolicy", "LRPolicy",
    "PolicyLoss", "LossComponent",
    "file_config", "dict_config", "describe_schedule", "config_component_from_file_by_class",
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

# Distiller's other top-level names, kept where its users import them from (README: "Coming from Distiller").
from . import (directives, early_exit, model_summaries, model_transforms, sensitivity,  # noqa: E402
               summary_graph)
from .directives import FreezeTraining, adjust_dropout, freeze_all, freeze_training  # noqa: E402
from .early_exit import EarlyExitMgr  # noqa: E402
from .pruning import (ActivationAPoZRankedFilterPruner, ActivationAPoZRankedFilterPruner_AGP,  # noqa: E402
                      ActivationMeanRankedFilterPruner, ActivationMeanRankedFilterPruner_AGP, AutomatedGradualPruner,
                      BaiduRNNPruner, BernoulliFilterPruner, BernoulliFilterPruner_AGP, FMReconstructionChannelPruner,
                      GradientRankedFilterPruner, GradientRankedFilterPruner_AGP, L1RankedStructureParameterPruner,
                      L1RankedStructureParameterPruner_AGP, L2RankedStructureParameterPruner,
                      L2RankedStructureParameterPruner_AGP, MagnitudeParameterPruner,
                      RandomLevelStructureParameterPruner, RandomRankedFilterPruner, RandomRankedFilterPruner_AGP,
                      SensitivityPruner, SparsityLevelParameterPruner, SplicingPruner, StructureParameterPruner,
                      create_mask_level_criterion, create_mask_sensitivity_criterion, create_mask_threshold_criterion,
                      mask_tensor)
from .pruning.greedy_filter_pruning import greedy_pruner  # noqa: E402
from .graph.drawing import (create_png, create_pydot_graph, draw_img_classifier_to_file,  # noqa: E402
                            draw_model_to_file)
from .sensitivity import perform_sensitivity_analysis, sensitivities_to_csv, sensitivities_to_png  # noqa: E402
from .summaries import (attributes_summary, attributes_summary_tbl, connectivity_summary,  # noqa: E402
                        connectivity_summary_verbose, connectivity_tbl_summary, export_img_classifier_to_onnx,
                        masks_sparsity_tbl_summary, model_performance_tbl_summary, model_summary,
                        weights_sparsity_summary, weights_sparsity_tbl_summary)
from .summary_graph import SummaryGraph, onnx_name_2_pytorch_name  # noqa: E402
from .thinning import (ChannelRemover, FilterRemover, StructureRemover, ThinningRecipe, contract_model,  # noqa: E402
                       execute_thinning_recipes_list, get_normalized_recipe, remove_channels, remove_filters,
                       resnet_cifar_remove_layers)
from .thresholding import GroupThresholdMixin  # noqa: E402
from .utils import (MutableNamedTuple, activation_channels_apoz, activation_channels_l1,  # noqa: E402
                    activation_channels_means, assign_layer_fq_names, convert_tensors_recursively_to, filter_kwargs,
                    float_range_argparse_checker, get_dummy_input, get_nonparallel_clone_model, has_children,
                    is_scalar, log_activation_statistics, log_model_buffers, log_training_progress,
                    log_weights_sparsity, make_non_parallel_copy, model_setattr, msglogger, non_zero_channels,
                    norm_filters, optimizer_device_name, param_name_2_module_name, pretty_int,
                    set_model_input_shape_attr, size2str, size_to_str, sparsity_matrix, to_np, yaml_ordered_load,
                    yaml_ordered_save)
from . import knowledge_distillation  # noqa: E402
from .knowledge_distillation import DistillationLossWeights, KnowledgeDistillationPolicy  # noqa: E402

__all__ += [
    "directives", "early_exit", "model_summaries", "model_transforms", "sensitivity", "summary_graph",
    # pruners
    "AutomatedGradualPruner", "MagnitudeParameterPruner", "SparsityLevelParameterPruner", "SensitivityPruner",
    "SplicingPruner", "BaiduRNNPruner", "StructureParameterPruner", "L1RankedStructureParameterPruner",
    "L2RankedStructureParameterPruner", "GradientRankedFilterPruner", "ActivationAPoZRankedFilterPruner",
    "ActivationMeanRankedFilterPruner", "RandomRankedFilterPruner", "BernoulliFilterPruner",
    "RandomLevelStructureParameterPruner", "FMReconstructionChannelPruner", "L1RankedStructureParameterPruner_AGP",
    "L2RankedStructureParameterPruner_AGP", "GradientRankedFilterPruner_AGP", "ActivationAPoZRankedFilterPruner_AGP",
    "ActivationMeanRankedFilterPruner_AGP", "RandomRankedFilterPruner_AGP", "BernoulliFilterPruner_AGP",
    "create_mask_threshold_criterion", "create_mask_level_criterion", "create_mask_sensitivity_criterion",
    "mask_tensor", "GroupThresholdMixin", "greedy_pruner",
    # thinning
    "remove_filters", "remove_channels", "contract_model", "StructureRemover", "FilterRemover", "ChannelRemover",
    "ThinningRecipe", "execute_thinning_recipes_list", "get_normalized_recipe", "resnet_cifar_remove_layers",
    # summaries, graphs and analysis
    "SummaryGraph", "onnx_name_2_pytorch_name", "model_summary", "weights_sparsity_summary",
    "weights_sparsity_tbl_summary", "masks_sparsity_tbl_summary", "model_performance_tbl_summary",
    "connectivity_summary", "connectivity_summary_verbose", "connectivity_tbl_summary", "attributes_summary",
    "attributes_summary_tbl", "export_img_classifier_to_onnx", "perform_sensitivity_analysis",
    "sensitivities_to_csv", "sensitivities_to_png", "create_pydot_graph", "create_png", "draw_model_to_file",
    "draw_img_classifier_to_file",
    # training directives and early exits
    "FreezeTraining", "freeze_training", "freeze_all", "adjust_dropout", "EarlyExitMgr",
    # Distiller's utils
    "MutableNamedTuple", "activation_channels_apoz", "activation_channels_l1", "activation_channels_means",
    "assign_layer_fq_names", "convert_tensors_recursively_to", "filter_kwargs", "float_range_argparse_checker",
    "get_dummy_input", "get_nonparallel_clone_model", "has_children", "is_scalar", "log_activation_statistics",
    "log_model_buffers", "log_training_progress", "log_weights_sparsity", "make_non_parallel_copy", "model_setattr",
    "msglogger", "non_zero_channels", "norm_filters", "optimizer_device_name", "param_name_2_module_name",
    "pretty_int", "set_model_input_shape_attr", "size2str", "size_to_str", "sparsity_matrix", "to_np",
    "yaml_ordered_load", "yaml_ordered_save",
    # knowledge distillation
    "knowledge_distillation", "KnowledgeDistillationPolicy", "DistillationLossWeights",
]
