"""distiller.thresholding: element and structure threshold masks, reg_regims types."""
from typing import Literal

import pytest
import torch

from distiller.errors import ArgumentError
from distiller.spec import check_value
from distiller.thresholding import (GroupThresholdMixin, Regims, Strength, StrengthAndGroup, group_scores,
                                   group_threshold_binary_map, group_threshold_mask, threshold_mask)


def test_threshold_mask_keeps_strictly_larger_magnitudes():
    w = torch.tensor([-0.3, 0.1, 0.2, -0.05], dtype=torch.float64)
    mask = threshold_mask(w, 0.1)
    assert mask.tolist() == [1.0, 0.0, 1.0, 0.0] and mask.dtype == torch.float64


@pytest.fixture
def spiky_filters():
    # filter 0: one large value among tiny ones (Max keeps it, Mean_Abs drops it); filter 1: uniform 0.2
    w = torch.full((2, 2, 2, 2), 0.01)
    w[0, 0, 0, 0] = 1.0
    w[1] = -0.2
    return w


def test_filters_mean_abs_versus_max(spiky_filters):
    # filter 0: mean |w| = (1 + 7 * 0.01) / 8 = 0.134, max 1.0; filter 1: mean = max = 0.2
    mean_mask = group_threshold_mask(spiky_filters, "Filters", 0.15, "Mean_Abs")
    max_mask = group_threshold_mask(spiky_filters, "3D", 0.15, "Max")
    assert mean_mask.sum(dim=(1, 2, 3)).tolist() == [0.0, 8.0]
    assert max_mask.sum(dim=(1, 2, 3)).tolist() == [8.0, 8.0]


def test_group_scores_are_per_structure(spiky_filters):
    assert torch.allclose(group_scores(spiky_filters, "Filters", "Mean_Abs"), torch.tensor([(1 + 7 * 0.01) / 8, 0.2]))
    assert torch.allclose(group_scores(spiky_filters, "2D", "Max"), torch.tensor([1.0, 0.01, 0.2, 0.2]))


def test_binary_map_has_one_entry_per_structure(spiky_filters):
    assert group_threshold_binary_map(spiky_filters, "2D", 0.1, "Max").tolist() == [1.0, 0.0, 1.0, 1.0]
    assert group_threshold_binary_map(spiky_filters, "4D", 0.5, "Mean_Abs").tolist() == [0.0]


def test_kernels_channels_and_layer(spiky_filters):
    kernel_mask = group_threshold_mask(spiky_filters, "2D", 0.1, "Max")
    assert kernel_mask.sum(dim=(2, 3)).tolist() == [[4.0, 0.0], [4.0, 4.0]]
    channel_mask = group_threshold_mask(spiky_filters, "Channels", 0.1, "Mean_Abs")
    # channel 0 holds 1.0, three 0.01 and four 0.2: mean 0.2 > 0.1; channel 1: four 0.01, four 0.2: 0.105
    assert channel_mask.sum(dim=(0, 2, 3)).tolist() == [8.0, 8.0]
    assert group_threshold_mask(spiky_filters, "Channels", 0.11, "Mean_Abs").sum(dim=(0, 2, 3)).tolist() == [8.0, 0.0]
    assert group_threshold_mask(spiky_filters, "4D", 0.5, "Mean_Abs").sum() == 0
    assert group_threshold_mask(spiky_filters, "4D", 0.5, "Max").sum() == 16


def test_rows_and_cols_of_linear():
    w = torch.tensor([[0.5, 0.0, 0.0], [0.01, 0.02, 0.0]])
    assert group_threshold_mask(w, "Rows", 0.1, "Max").tolist() == [[1, 1, 1], [0, 0, 0]]
    assert group_threshold_mask(w, "Cols", 0.1, "Max").tolist() == [[1, 0, 0], [1, 0, 0]]


def test_mask_follows_param_dtype():
    w = torch.ones(2, 2, dtype=torch.float16)
    assert group_threshold_mask(w, "Rows", 0.5, "Max").dtype == torch.float16


def test_bad_criteria_and_group_type():
    with pytest.raises(ValueError, match="unknown threshold_criteria 'L1'"):
        group_threshold_mask(torch.ones(2, 2), "Rows", 0.1, "L1")
    with pytest.raises(ValueError, match="unknown group_type 'Row'"):
        group_threshold_mask(torch.ones(2, 2), "Row", 0.1, "Max")


@pytest.mark.parametrize("value, location, expected", [
    ({"a": 0.1}, ("a",), "expects a list [number >= 0, 'Filters'], got 0.1"),
    ({"a": [0.1, "Filter"]}, ("a", 1), "expects 'Filters', got 'Filter'"),
    ({"a": ["x", "Filters"]}, ("a", 0), "expects a number >= 0, got 'x'"),
    ({"a": [-1, "Filters"]}, ("a", 0), "expects a number >= 0, got -1"),
    ({}, (), "expects a mapping of string to list [number >= 0, 'Filters'], got {}"),
    (None, (), "got None"),
])
def test_reg_regims_types_name_the_bad_entry(value, location, expected):
    hint = Regims[StrengthAndGroup[Literal["Filters"]]]
    assert check_value("R", "reg_regims", hint, {"a": ["1e-3", "Filters"]}) == {"a": (0.001, "Filters")}
    with pytest.raises(ArgumentError) as info:
        check_value("R", "reg_regims", hint, value)
    assert info.value.location == location and expected in str(info.value)
    assert check_value("R", "reg_regims", Regims[Strength], {"a": "1e-3"}) == {"a": 0.001}


def test_binary_map_from_another_layer_is_expanded_instead_of_thresholding(spiky_filters):
    # Filter 0 scores highest, but the map computed on another layer keeps only filter 1.
    keep_second = torch.tensor([0.0, 1.0])
    mask = group_threshold_mask(spiky_filters, "Filters", 1e9, "Max", binary_map=keep_second)
    assert mask.shape == spiky_filters.shape
    assert mask[0].sum() == 0 and bool(mask[1].eq(1).all())
    channels = group_threshold_mask(spiky_filters, "Channels", 0.0, "Max", torch.tensor([1.0, 0.0]))
    assert channels[:, 0].eq(1).all() and channels[:, 1].eq(0).all()


def test_binary_map_must_have_one_entry_per_structure(spiky_filters):
    with pytest.raises(ArgumentError, match="binary_map has 3 entries but a weight of shape .* has 2 'Filters'"):
        group_threshold_mask(spiky_filters, "Filters", 0.1, "Max", binary_map=torch.ones(3))


def test_group_threshold_mixin_gives_pruners_the_function_as_a_method(spiky_filters):
    class MyPruner(GroupThresholdMixin):
        pass

    assert torch.equal(MyPruner().group_threshold_mask(spiky_filters, "Filters", 0.15, "Mean_Abs"),
                       group_threshold_mask(spiky_filters, "Filters", 0.15, "Mean_Abs"))
