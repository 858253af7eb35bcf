"""Element-wise mask criteria: threshold, exact level (with ties) and sensitivity (std-scaled)."""
import math

import pytest
import torch

from distiller.errors import ArgumentError
from distiller.pruning import (create_mask_level_criterion, create_mask_sensitivity_criterion,
                               create_mask_threshold_criterion, mask_tensor)


def test_threshold_mask_keeps_strictly_larger_magnitudes():
    w = torch.tensor([[0.1, -0.5], [0.05, -0.1]])
    mask = create_mask_threshold_criterion(w, 0.1)
    assert torch.equal(mask, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    assert mask.dtype == w.dtype


def test_threshold_accepts_0d_tensor_and_keeps_dtype():
    w = torch.tensor([0.3, -0.2, 0.0], dtype=torch.float64)
    mask = create_mask_threshold_criterion(w, torch.tensor(0.25, dtype=torch.float64))
    assert mask.dtype == torch.float64
    assert mask.tolist() == [1.0, 0.0, 0.0]


def test_threshold_mask_does_not_track_gradients_or_modify_input():
    w = torch.nn.Parameter(torch.tensor([1.0, -0.01]))
    mask = create_mask_threshold_criterion(w, 0.1)
    assert not mask.requires_grad
    assert w.tolist() == [1.0, pytest.approx(-0.01)]


@pytest.mark.parametrize("level", [0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 0.999, 1.0])
def test_level_mask_prunes_exact_count_of_smallest(level):
    torch.manual_seed(0)
    w = torch.randn(7, 11, 3)
    mask = create_mask_level_criterion(w, level)
    expected_zeros = math.floor(round(level * w.numel(), 9))
    assert int((mask == 0).sum()) == expected_zeros
    if 0 < expected_zeros < w.numel():
        assert w.abs()[mask == 0].max() <= w.abs()[mask == 1].min()


def test_level_mask_float_error_does_not_lose_an_element():
    # 0.29 * 100 == 28.999999999999996 in floating point: still 29 elements.
    assert int((create_mask_level_criterion(torch.randn(100), 0.29) == 0).sum()) == 29


@pytest.mark.parametrize("level, zeros", [(0.25, 2), (0.5, 4), (0.75, 6)])
def test_level_mask_is_exact_with_ties(level, zeros):
    w = torch.tensor([1.0, -1.0, 1.0, 1.0, 2.0, 2.0, -2.0, 2.0])
    mask = create_mask_level_criterion(w, level)
    assert int((mask == 0).sum()) == zeros
    # ties are broken inside the tied group only: nothing larger is pruned before all smaller ones
    assert w.abs()[mask == 0].max() <= w.abs()[mask == 1].min()


def test_level_mask_counts_already_zero_weights_first():
    w = torch.tensor([0.0, 0.0, 0.0, 0.5, -0.4, 0.3, 2.0, 1.0])
    mask = create_mask_level_criterion(w, 0.5)
    assert mask.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]


def test_level_mask_rejects_out_of_range():
    with pytest.raises(ValueError, match="outside"):
        create_mask_level_criterion(torch.ones(4), 1.5)


def test_masks_reject_integer_tensors():
    with pytest.raises(TypeError, match="floating-point"):
        create_mask_level_criterion(torch.ones(4, dtype=torch.int64), 0.5)


def test_sensitivity_mask_uses_std_times_sensitivity():
    w = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])  # unbiased std = sqrt(2.5) = 1.5811
    assert create_mask_sensitivity_criterion(w, 1.0).tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert create_mask_sensitivity_criterion(w, 0.5).tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]
    assert create_mask_sensitivity_criterion(w, 0.0).tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]


def test_sensitivity_mask_scales_with_the_weights():
    w = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
    assert torch.equal(create_mask_sensitivity_criterion(w * 1000, 1.0), create_mask_sensitivity_criterion(w, 1.0))


def test_sensitivity_of_single_element_keeps_nonzero():
    assert create_mask_sensitivity_criterion(torch.tensor([0.3]), 2.0).tolist() == [1.0]


def test_mask_tensor_in_place_or_as_a_copy():
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    mask = torch.tensor([1.0, 0.0, 1.0])
    copy = mask_tensor(weight, mask, inplace=False)
    assert copy.tolist() == [1.0, 0.0, 3.0] and weight.tolist() == [1.0, -2.0, 3.0] and not copy.requires_grad
    assert mask_tensor(weight, mask) is weight and weight.tolist() == [1.0, 0.0, 3.0]
    assert mask_tensor(weight, None) is weight
    with pytest.raises(ArgumentError, match="mask shape"):
        mask_tensor(weight, torch.ones(2))


@pytest.mark.parametrize("sparsity", [0.3, 0.7])
def test_level_mask_of_a_channels_last_weight_prunes_its_smallest_elements(sparsity):
    # A channels-last conv weight (as `--channels-last` makes them) is not viewable as one row: the mask
    # is built in the logical order of its elements, whatever its memory layout.
    weight = torch.randn(8, 4, 3, 3).to(memory_format=torch.channels_last)
    mask = create_mask_level_criterion(weight, sparsity, dtype=torch.bool)
    expected = create_mask_level_criterion(weight.contiguous(), sparsity, dtype=torch.bool)
    assert torch.equal(mask, expected)
    assert weight.abs()[~mask].max() <= weight.abs()[mask].min()
