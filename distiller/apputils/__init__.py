"""Application utilities: checkpoints, data loaders and the experiment environment."""
from .checkpoint import load_checkpoint, load_lean_checkpoint, read_checkpoint, save_checkpoint

__all__ = ["save_checkpoint", "load_checkpoint", "load_lean_checkpoint", "read_checkpoint"]
