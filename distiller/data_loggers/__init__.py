"""Data loggers (Python logging, TensorBoard, CSV) and activation-statistics collectors."""
from .context import collector_context
from .logger import (CsvLogger, DataLogger, PythonLogger, TensorBoardLogger, log_activation_statistics,
                     log_model_buffers, log_training_progress, log_weights_sparsity, model_buffer_values,
                     weights_sparsity_rows)

__all__ = ["DataLogger", "PythonLogger", "TensorBoardLogger", "CsvLogger", "weights_sparsity_rows",
           "model_buffer_values", "log_training_progress", "log_weights_sparsity", "log_activation_statistics",
           "log_model_buffers", "collector_context"]
from .collector import (STATS_FILE_NAME, QuantCalibrationStatsCollector, collect_quant_stats, load_quant_stats,
                        save_quant_stats)

__all__ += ["QuantCalibrationStatsCollector", "collect_quant_stats", "save_quant_stats", "load_quant_stats",
            "STATS_FILE_NAME"]
