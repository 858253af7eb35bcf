"""Fusion compression from Python: chain a :class:`Pruner`, a :class:`Quantizer` and a :class:`Distiller` on
one model (``from_compressor``), run them in one training loop, and get the equivalent YAML schedule."""
from .compressors import Compressor, Distiller, Pruner, Quantizer

__all__ = ["Compressor", "Pruner", "Quantizer", "Distiller"]
