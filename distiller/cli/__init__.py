"""Reusable argparse groups for the sample applications (the library itself never parses arguments)."""
from .common import (ArgumentParser, add_common_args, add_dataset_args, add_device_args, add_model_args,
                     add_optimizer_args, add_output_args, add_resume_args, add_training_args, fraction, gpu_ids,
                     non_negative_int, positive_float, positive_int)
from .analysis import add_analysis_args
from .early_exit import add_earlyexit_args
from .pruning import add_thinning_args
from .statistics import add_statistics_args

__all__ = ["ArgumentParser", "add_common_args", "add_dataset_args", "add_model_args", "add_training_args",
           "add_optimizer_args", "add_resume_args", "add_device_args", "add_output_args", "add_thinning_args",
           "add_statistics_args", "add_analysis_args", "add_earlyexit_args", "positive_int", "non_negative_int",
           "positive_float", "fraction", "gpu_ids"]
from .quantization import add_post_train_quant_args

__all__ += ["add_post_train_quant_args"]
