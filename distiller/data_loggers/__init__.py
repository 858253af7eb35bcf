"""Data loggers (Python logging, TensorBoard, CSV) and activation-statistics collectors."""
from .logger import (CsvLogger, DataLogger, PythonLogger, TensorBoardLogger, log_activation_statistics,
                     log_training_progress, log_weights_sparsity, weights_sparsity_rows)

__all__ = ["DataLogger", "PythonLogger", "TensorBoardLogger", "CsvLogger", "weights_sparsity_rows",
           "log_training_progress", "log_weights_sparsity", "log_activation_statistics"]
