"""Distiller's module path for simulated BatchNorm folding; it now lives in :mod:`distiller.quantization.bn_fold`."""
from .bn_fold import SimulatedFoldedBatchNorm

__all__ = ["SimulatedFoldedBatchNorm"]
