"""Distiller's module path for its learning-rate schedulers; they now live in :mod:`distiller.lr_schedulers`."""
from .lr_schedulers import MultiStepMultiGammaLR, PolynomialLR

__all__ = ["MultiStepMultiGammaLR", "PolynomialLR"]
