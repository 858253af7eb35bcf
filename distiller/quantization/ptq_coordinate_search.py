"""Distiller's module path for loss-aware post-training quantization (LAPQ); it now lives in
:mod:`distiller.quantization.lapq`."""
from .lapq import LAPQ_INIT_MODES, lp_optimal_weight_multiplier, ptq_coordinate_search

__all__ = ["ptq_coordinate_search", "LAPQ_INIT_MODES", "lp_optimal_weight_multiplier"]
