"""Application utilities: checkpoints, data loaders and the experiment environment."""
from .checkpoint import get_contents_table, load_checkpoint, load_lean_checkpoint, read_checkpoint, save_checkpoint
from .checkpoint_schedule import resume_schedule
from .data_loaders import (EpochSubsetSampler, classification_dataset_str_from_arch, classification_get_input_shape,
                           classification_num_classes, load_data)
from .execution_env import config_pylogger, create_run_dir, log_execution_env_state

__all__ = ["save_checkpoint", "load_checkpoint", "load_lean_checkpoint", "read_checkpoint", "resume_schedule",
           "load_data", "EpochSubsetSampler", "classification_dataset_str_from_arch", "classification_num_classes",
           "classification_get_input_shape", "config_pylogger", "create_run_dir", "log_execution_env_state",
           "get_contents_table"]
