"""Tiny models and a minimal training loop shared by tests, notebooks and docs."""
from .models import TinyCNN, TinyConcatNet, TinyResidualNet, train_with_scheduler
from .transformers import TinyTransformer

__all__ = ["TinyCNN", "TinyConcatNet", "TinyResidualNet", "TinyTransformer", "train_with_scheduler"]
