"""Metrics of compressed models: sparsity and density of tensors, structures and whole models."""
from .sparsity import (density, density_2D, density_3D, density_ch, density_cols, density_rows, model_numel,
                       model_params_size, model_params_stats, model_sparsity, selected_tensors, sparsity,
                       sparsity_2D, sparsity_3D, sparsity_blocks, sparsity_ch, sparsity_cols, sparsity_matrix,
                       sparsity_rows, zero_rows_fraction)

__all__ = [
    "sparsity", "density",
    "sparsity_2D", "density_2D",
    "sparsity_3D", "density_3D",
    "sparsity_ch", "density_ch",
    "sparsity_rows", "density_rows",
    "sparsity_cols", "density_cols",
    "sparsity_matrix", "sparsity_blocks", "zero_rows_fraction",
    "model_sparsity", "model_numel", "model_params_stats", "model_params_size", "selected_tensors",
]
