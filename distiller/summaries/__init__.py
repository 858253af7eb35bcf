"""Model summaries: compute cost (MACs, feature-map shapes) per layer."""
from .compute import SUMMARY_COLUMNS, model_macs, model_params, model_performance_summary

__all__ = ["model_performance_summary", "model_macs", "model_params", "SUMMARY_COLUMNS"]
