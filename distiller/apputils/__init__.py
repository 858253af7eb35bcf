"""Application utilities: checkpoints, data loaders and the experiment environment."""
from .checkpoint import load_checkpoint, load_lean_checkpoint, read_checkpoint, save_checkpoint
from .data_loaders import classification_dataset_str_from_arch, load_data
from .execution_env import config_pylogger, create_run_dir, log_execution_env_state

__all__ = ["save_checkpoint", "load_checkpoint", "load_lean_checkpoint", "read_checkpoint", "load_data",
           "classification_dataset_str_from_arch", "config_pylogger", "create_run_dir", "log_execution_env_state"]
