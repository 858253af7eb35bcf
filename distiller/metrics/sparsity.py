"""Sparsity and density of tensors (element-wise and per structure) and of whole models.

A structure (kernel, filter, channel, row, column, block) counts as zero when all its elements are zero.
Structures follow :func:`distiller.norms.structure_view`. Tensor metrics return Python floats in [0, 1];
:func:`model_sparsity` returns a percentage, as in Distiller.

Example:
    >>> w = torch.ones(4, 3, 3, 3); w[1] = 0; w[3] = 0
    >>> sparsity_3D(w)      # 2 of 4 filters are zero
    0.5
"""
from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

import torch

from ..errors import ArgumentError
from ..norms import structure_view


def _check_tensor(tensor: torch.Tensor) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.numel() == 0:
        raise ArgumentError(f"the sparsity of an empty tensor (shape {tuple(tensor.shape)}) is undefined")


def density(tensor: torch.Tensor) -> float:
    """Fraction of non-zero elements of ``tensor``."""
    _check_tensor(tensor)
    return torch.count_nonzero(tensor).item() / tensor.numel()


def sparsity(tensor: torch.Tensor) -> float:
    """Fraction of zero elements of ``tensor``."""
    _check_tensor(tensor)
    return (tensor.numel() - torch.count_nonzero(tensor).item()) / tensor.numel()


def zero_rows_fraction(matrix: torch.Tensor) -> float:
    """Fraction of the rows of a 2D tensor whose elements are all zero."""
    nonzero_rows = torch.count_nonzero(matrix.ne(0).any(dim=1)).item()
    return (matrix.shape[0] - nonzero_rows) / matrix.shape[0]


def sparsity_2D(tensor: torch.Tensor) -> float:
    """Kernel-wise sparsity: fraction of zero 2D kernels ``w[o, i]`` of a 4D conv weight, or of zero
    rows of a 2D tensor; 0 for other ranks."""
    _check_tensor(tensor)
    if tensor.dim() == 4:
        return zero_rows_fraction(structure_view(tensor, "2D"))
    if tensor.dim() == 2:
        return zero_rows_fraction(tensor)
    return 0.0


def density_2D(tensor: torch.Tensor) -> float:
    """1 - :func:`sparsity_2D`."""
    return 1.0 - sparsity_2D(tensor)


def sparsity_3D(tensor: torch.Tensor) -> float:
    """Filter-wise sparsity: fraction of zero output filters of a 4D conv weight; 0 for other ranks."""
    _check_tensor(tensor)
    if tensor.dim() != 4:
        return 0.0
    return zero_rows_fraction(structure_view(tensor, "Filters"))


def density_3D(tensor: torch.Tensor) -> float:
    """1 - :func:`sparsity_3D`."""
    return 1.0 - sparsity_3D(tensor)


def sparsity_ch(tensor: torch.Tensor) -> float:
    """Channel-wise sparsity: fraction of input channels ``w[:, c]`` that are zero in every filter of a
    4D conv weight; 0 for other ranks."""
    _check_tensor(tensor)
    if tensor.dim() != 4:
        return 0.0
    return zero_rows_fraction(structure_view(tensor, "Channels"))


def density_ch(tensor: torch.Tensor) -> float:
    """1 - :func:`sparsity_ch`."""
    return 1.0 - sparsity_ch(tensor)


def sparsity_matrix(tensor: torch.Tensor, dim: int) -> float:
    """Fraction of zero slices of a 2D tensor along ``dim``: rows (``dim=0``) or columns (``dim=1``) of
    the stored matrix; 0 for other ranks."""
    _check_tensor(tensor)
    if dim not in (0, 1):
        raise ArgumentError(f"dim must be 0 (rows) or 1 (columns), got {dim}")
    if tensor.dim() != 2:
        return 0.0
    return zero_rows_fraction(tensor if dim == 0 else tensor.t())


def sparsity_rows(tensor: torch.Tensor, transposed: bool = True) -> float:
    """Row-wise sparsity of a 2D (Linear) weight; 0 for other ranks.

    PyTorch stores Linear weights transposed (``[out, in]``) with respect to the GEMM ``x @ W``, so by
    default (``transposed=True``) the rows of the GEMM matrix, i.e. the input features, are the *columns*
    of the stored tensor. With ``transposed=False`` the stored rows count. (Distiller spelled this argument
    ``trasposed`` in ``sparsity_rows``/``sparsity_cols`` and ``transposed`` in ``density_rows``/``density_cols``;
    all four take ``transposed`` here.)
    """
    return sparsity_matrix(tensor, 1 if transposed else 0)


def sparsity_cols(tensor: torch.Tensor, transposed: bool = True) -> float:
    """Column-wise sparsity of a 2D (Linear) weight; 0 for other ranks.

    By default (``transposed=True``) the GEMM columns, i.e. output features, are the stored rows; with
    ``transposed=False`` the stored columns count. See :func:`sparsity_rows`.
    """
    return sparsity_matrix(tensor, 0 if transposed else 1)


def density_rows(tensor: torch.Tensor, transposed: bool = True) -> float:
    """1 - :func:`sparsity_rows`."""
    return 1.0 - sparsity_rows(tensor, transposed)


def density_cols(tensor: torch.Tensor, transposed: bool = True) -> float:
    """1 - :func:`sparsity_cols`."""
    return 1.0 - sparsity_cols(tensor, transposed)


def sparsity_blocks(tensor: torch.Tensor, block_shape: Sequence[int]) -> float:
    """Fraction of zero blocks among the ``block_shape`` blocks that tile ``tensor``.

    Args:
        tensor: a weight tensor.
        block_shape: one block size per dimension, e.g. ``[1, 4, 1, 1]`` (4 consecutive input channels
            of one filter at one kernel position); each must divide the tensor's size.
    Raises:
        ValueError: when ``block_shape`` does not tile ``tensor``.
    """
    _check_tensor(tensor)
    return zero_rows_fraction(structure_view(tensor, "Blocks", block_shape))


def selected_tensors(model: torch.nn.Module, param_dims: Collection[int] = (2, 4),
                     param_types: Collection[str] = ("weight", "bias")) -> Iterator[tuple[str, torch.Tensor]]:
    """Yields ``(name, tensor)`` for the state-dict tensors whose rank is in ``param_dims`` and whose last name
    component (``weight``, ``bias``, ...) is in ``param_types``: the tensors that the model-level metrics and
    the sparsity summaries cover."""
    for name, tensor in model.state_dict().items():
        if (isinstance(tensor, torch.Tensor) and tensor.dim() in param_dims
                and name.rsplit(".", 1)[-1] in param_types):
            yield name, tensor


def model_numel(model: torch.nn.Module, param_dims: Collection[int] = (2, 4),
                param_types: Collection[str] = ("weight", "bias")) -> int:
    """Total number of elements of the model tensors selected by rank and type (see :func:`model_sparsity`)."""
    return sum(tensor.numel() for _, tensor in selected_tensors(model, param_dims, param_types))


def model_params_stats(model: torch.nn.Module, param_dims: Collection[int] = (2, 4),
                       param_types: Collection[str] = ("weight", "bias")) -> tuple[float, int, int]:
    """Returns ``(sparsity_percent, numel, nonzero_count)`` over the selected model tensors.

    Raises:
        ValueError: when no tensor of the model is selected.
    """
    numel = nonzero = 0
    for _, tensor in selected_tensors(model, param_dims, param_types):
        numel += tensor.numel()
        nonzero += int(torch.count_nonzero(tensor))
    if numel == 0:
        raise ArgumentError(f"no tensor of the model has a rank in param_dims={list(param_dims)} and a name "
                            f"ending in param_types={list(param_types)}; widen the selection")
    return 100.0 * (numel - nonzero) / numel, numel, nonzero


def model_sparsity(model: torch.nn.Module, param_dims: Collection[int] = (2, 4),
                   param_types: Collection[str] = ("weight", "bias")) -> float:
    """Percentage of zero elements over the model tensors of rank ``param_dims`` named ``param_types``.

    The default selects the weights of Linear (2D) and Conv2d (4D) layers. Selection matches the last
    component of each state-dict name exactly (``conv1.weight`` is a ``weight``; ``conv1.weight_mask`` is
    not).
    """
    return model_params_stats(model, param_dims, param_types)[0]


def model_params_size(model: torch.nn.Module, param_dims: Collection[int] = (2, 4),
                      param_types: Collection[str] = ("weight", "bias")) -> int:
    """Number of non-zero elements over the selected model tensors (the size of a sparse encoding)."""
    return model_params_stats(model, param_dims, param_types)[2]
