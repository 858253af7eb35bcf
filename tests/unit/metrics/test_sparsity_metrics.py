"""Sparsity metrics against hand-computed values."""
import pytest
import torch

from distiller import metrics


@pytest.fixture
def conv_weight():
    """[4 filters, 3 channels, 2, 2]: filters 1 and 3 zero; channel 2 zero in every filter; one more zero
    kernel (filter 0, channel 0)."""
    w = torch.ones(4, 3, 2, 2)
    w[1] = 0
    w[3] = 0
    w[:, 2] = 0
    w[0, 0] = 0
    return w


def test_element_sparsity_and_density(conv_weight):
    zeros = 2 * 12 + 2 * 4 + 4  # two filters, channel 2 of the other two, kernel (0, 0)
    assert metrics.sparsity(conv_weight) == pytest.approx(zeros / 48)
    assert metrics.density(conv_weight) == pytest.approx(1 - zeros / 48)


def test_filter_channel_and_kernel_sparsity(conv_weight):
    assert metrics.sparsity_3D(conv_weight) == 0.5
    assert metrics.density_3D(conv_weight) == 0.5
    assert metrics.sparsity_ch(conv_weight) == pytest.approx(1 / 3)   # only channel 2 is zero everywhere
    assert metrics.density_ch(conv_weight) == pytest.approx(2 / 3)
    assert metrics.sparsity_2D(conv_weight) == pytest.approx(9 / 12)  # 6 + 2 + 1 zero kernels
    assert metrics.density_2D(conv_weight) == pytest.approx(3 / 12)


def test_channel_sparsity_needs_all_filters_zero():
    w = torch.ones(2, 3, 1, 1)
    w[0, 1] = 0  # channel 1 is zero in filter 0 only
    assert metrics.sparsity_ch(w) == 0.0
    w[1, 1] = 0
    assert metrics.sparsity_ch(w) == pytest.approx(1 / 3)


def test_linear_rows_and_cols_follow_transposed_convention():
    w = torch.ones(3, 5)   # Linear(5, 3): [out, in]
    w[:, 2] = 0            # input feature 2 unused
    w[:, 4] = 0            # input feature 4 unused
    w[1] = 0               # output neuron 1 dead
    # GEMM rows are input features (stored columns) when transposed=True
    assert metrics.sparsity_rows(w) == pytest.approx(2 / 5)
    assert metrics.sparsity_cols(w) == pytest.approx(1 / 3)
    assert metrics.sparsity_rows(w, transposed=False) == pytest.approx(1 / 3)
    assert metrics.sparsity_cols(w, transposed=False) == pytest.approx(2 / 5)
    assert metrics.density_rows(w) == pytest.approx(3 / 5)
    assert metrics.density_cols(w) == pytest.approx(2 / 3)
    assert metrics.sparsity_2D(w) == pytest.approx(1 / 3)  # zero rows of a 2D tensor


def test_structure_metrics_are_zero_for_ranks_without_that_structure():
    vector = torch.zeros(4)
    assert metrics.sparsity_3D(vector) == metrics.sparsity_ch(vector) == metrics.sparsity_2D(vector) == 0.0
    assert metrics.sparsity_rows(torch.zeros(2, 2, 1, 1)) == 0.0


def test_block_sparsity(conv_weight):
    # blocks of 1 filter x 3 channels x 1 x 1: 16 blocks; filters 1, 3 give 8 zero blocks, filter 0 has
    # channel 1 non-zero at every kernel position
    assert metrics.sparsity_blocks(conv_weight, [1, 3, 1, 1]) == 0.5
    # blocks of 2 filters x 1 channel x 2 x 2: 2 x 3 = 6 blocks; zero: channel 2 of both filter pairs and
    # channel 0 of filters 0-1 (filter 0 channel 0 and filter 1 are zero)
    assert metrics.sparsity_blocks(conv_weight, [2, 1, 2, 2]) == 0.5
    # 1 x 1 x 2 x 2 blocks are the kernels
    assert metrics.sparsity_blocks(conv_weight, [1, 1, 2, 2]) == metrics.sparsity_2D(conv_weight)


def test_block_shape_that_does_not_tile_is_rejected(conv_weight):
    with pytest.raises(ValueError, match="does not tile"):
        metrics.sparsity_blocks(conv_weight, [3, 1, 1, 1])


def test_empty_tensor_is_rejected():
    with pytest.raises(ValueError, match="empty tensor"):
        metrics.sparsity(torch.empty(0, 3))


class TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3)          # 72 weights + 4 biases
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 2)               # 8 weights + 2 biases
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.weight[:2] = 0                  # 36 zeros
            self.fc.weight.fill_(1.0)
            self.fc.weight[0, :2] = 0                 # 2 zeros


def test_model_sparsity_counts_conv_and_linear_weights():
    model = TwoLayers()
    assert metrics.model_numel(model) == 80
    assert metrics.model_sparsity(model) == pytest.approx(100 * 38 / 80)
    assert metrics.model_params_size(model) == 42
    assert metrics.model_params_stats(model) == (pytest.approx(47.5), 80, 42)


def test_model_sparsity_selection_by_rank_and_type():
    model = TwoLayers()
    assert metrics.model_numel(model, param_dims=[1], param_types=["bias"]) == 4 + 4 + 2  # conv, bn, fc
    assert metrics.model_numel(model, param_dims=[4]) == 72
    assert metrics.model_sparsity(model, param_dims=[4]) == pytest.approx(50.0)
    # only the BatchNorm weight is a 1D "weight": running statistics are not selected
    assert metrics.model_numel(model, param_dims=[1], param_types=["weight"]) == 4


def test_model_sparsity_without_selected_tensors_raises():
    with pytest.raises(ValueError, match="widen the selection"):
        metrics.model_sparsity(TwoLayers(), param_dims=[3])
