"""Distiller's module path for the quantizer base class; it now lives in :mod:`distiller.quantization.base`."""
from .base import FP_BKP_PREFIX, ParamToQuant, QBits, Quantizer

__all__ = ["Quantizer", "QBits", "FP_BKP_PREFIX", "ParamToQuant"]
