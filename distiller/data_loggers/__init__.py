"""Data loggers (Python logging, TensorBoard, CSV) and activation-statistics collectors."""
from .activation_stats import (ActivationStatsCollector, CollectorDirection, RecordsActivationStatsCollector,
                               SummaryActivationStatsCollector)
from .collector import (STATS_FILE_NAME, QuantCalibrationStatsCollector, collect_quant_stats, load_quant_stats,
                        save_quant_stats)
from .context import collector_context, collectors_context
from .histograms import HISTOGRAMS_FILE_NAME, ActivationHistogramsCollector, collect_histograms
from .logger import (CsvLogger, DataLogger, PythonLogger, TensorBoardLogger, log_activation_statistics,
                     log_model_buffers, log_training_progress, log_weights_sparsity, model_buffer_values,
                     weights_sparsity_rows)

__all__ = ["DataLogger", "PythonLogger", "TensorBoardLogger", "CsvLogger", "weights_sparsity_rows",
           "model_buffer_values", "log_training_progress", "log_weights_sparsity", "log_activation_statistics",
           "log_model_buffers", "collector_context", "collectors_context",
           "QuantCalibrationStatsCollector", "collect_quant_stats", "save_quant_stats", "load_quant_stats",
           "STATS_FILE_NAME",
           "CollectorDirection", "ActivationStatsCollector", "SummaryActivationStatsCollector",
           "RecordsActivationStatsCollector", "ActivationHistogramsCollector", "collect_histograms",
           "HISTOGRAMS_FILE_NAME"]
