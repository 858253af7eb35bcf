"""distiller.norms: structure norms against hand-computed values, mask expansion, ranked keep-masks."""
import math

import pytest
import torch

from distiller import norms


@pytest.fixture
def conv_weight():
    # [out=2, in=3, kh=2, kw=2]; element value = its flat index
    return torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2)


@pytest.fixture
def linear_weight():
    return torch.arange(12, dtype=torch.float32).reshape(3, 4)


def test_filters_l1_l2_and_length_normalized(conv_weight):
    assert norms.filters_lp_norm(conv_weight, p=1).tolist() == [66.0, 210.0]
    expected_l2 = [math.sqrt(sum(i * i for i in range(12))), math.sqrt(sum(i * i for i in range(12, 24)))]
    assert torch.allclose(norms.filters_lp_norm(conv_weight, p=2), torch.tensor(expected_l2))
    assert norms.filters_lp_norm(conv_weight, p=1, length_normalized=True).tolist() == [66 / 12, 210 / 12]


def test_channels_norm_of_conv_and_linear(conv_weight, linear_weight):
    # channel c of the conv = w[:, c]: [4c .. 4c+3] of filter 0 plus the same + 12 of filter 1
    assert norms.channels_lp_norm(conv_weight).tolist() == [60.0, 92.0, 124.0]
    # channels of a Linear weight are its columns
    assert norms.channels_lp_norm(linear_weight).tolist() == [12.0, 15.0, 18.0, 21.0]
    assert norms.filters_lp_norm(linear_weight).tolist() == [6.0, 22.0, 38.0]


def test_channels_of_grouped_conv_are_per_group_channels():
    conv = torch.nn.Conv2d(4, 6, 1, groups=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(12, dtype=torch.float32).reshape(6, 2, 1, 1))
    # weight [6, 2, 1, 1]: dim 1 holds the 2 input channels of a group, summed over all 6 filters
    result = norms.channels_lp_norm(conv.weight)
    assert result.tolist() == [0 + 2 + 4 + 6 + 8 + 10, 1 + 3 + 5 + 7 + 9 + 11]
    assert not result.requires_grad


def test_rows_cols_kernels_blocks(conv_weight):
    assert norms.rows_lp_norm(conv_weight).tolist() == [66.0, 210.0]
    # column j of weight.view(2, 12) holds j and j + 12
    assert norms.cols_lp_norm(conv_weight).tolist() == [12.0 + 2 * j for j in range(12)]
    assert norms.kernels_lp_norm(conv_weight).tolist() == [6.0, 22.0, 38.0, 54.0, 70.0, 86.0]
    # blocks of 1 filter x 3 channels x 1 row x 2 columns
    assert norms.blocks_lp_norm(conv_weight, [1, 3, 1, 2]).tolist() == [27.0, 39.0, 99.0, 111.0]


def test_group_len_sums_consecutive_structures():
    weight = torch.arange(16, dtype=torch.float32).reshape(4, 4, 1, 1)
    assert norms.filters_lp_norm(weight, group_len=2).tolist() == [0 + 1 + 2 + 3 + 4 + 5 + 6 + 7,
                                                                  sum(range(8, 16))]
    with pytest.raises(ValueError, match="group_len=3 must be a positive divisor of the 4 Filters"):
        norms.filters_lp_norm(weight, group_len=3)


def test_shorthands():
    t = torch.tensor([[3.0, -4.0], [0.0, 1.0]])
    assert norms.l1_norm(t).tolist() == [7.0, 1.0]
    assert norms.l2_norm(t).tolist() == [5.0, 1.0]
    assert norms.max_norm(t).tolist() == [4.0, 1.0]
    assert norms.l1_norm(t, dim=0).tolist() == [3.0, 5.0]


@pytest.mark.parametrize("group_type, block_shape", [
    ("Filters", None), ("3D", None), ("Channels", None), ("Rows", None), ("Cols", None), ("2D", None),
    ("4D", None), ("Blocks", [1, 3, 1, 2]), ("Blocks", [2, 1, 2, 1])])
def test_expand_structure_mask_inverts_structure_view(conv_weight, group_type, block_shape):
    count = norms.structure_view(conv_weight, group_type, block_shape).shape[0]
    ids = torch.arange(count)
    expanded = norms.expand_structure_mask(ids, conv_weight.shape, group_type, block_shape)
    assert expanded.shape == conv_weight.shape
    # every element of structure s carries id s
    view = norms.structure_view(expanded, group_type, block_shape)
    assert torch.equal(view, ids[:, None].expand_as(view))


def test_expand_channels_of_linear(linear_weight):
    keep = torch.tensor([True, False, True, False])
    mask = norms.expand_structure_mask(keep, linear_weight.shape, "Channels")
    assert mask.tolist() == [[True, False, True, False]] * 3


def test_bad_structure_arguments(conv_weight):
    with pytest.raises(ValueError, match="unknown group_type 'Kernel'"):
        norms.structure_view(conv_weight, "Kernel")
    with pytest.raises(ValueError, match="does not tile"):
        norms.blocks_lp_norm(conv_weight, [1, 2, 1, 1])
    with pytest.raises(ValueError, match="one positive size per weight dimension"):
        norms.blocks_lp_norm(conv_weight, [1, 3])
    with pytest.raises(ValueError, match="needs a block_shape"):
        norms.structure_view(conv_weight, "Blocks")
    with pytest.raises(ValueError, match="needs a block_shape"):
        norms.expand_structure_mask(torch.ones(4), conv_weight.shape, "Blocks")
    with pytest.raises(ValueError, match="needs a 2D"):
        norms.filters_lp_norm(torch.ones(2, 2, 2))


def test_linear_blocks_accept_distiller_four_element_shape(linear_weight):
    assert norms.blocks_lp_norm(linear_weight, [1, 2, 1, 1]).tolist() == [1.0, 5.0, 9.0, 13.0, 17.0, 21.0]


def test_ranked_mask_prunes_the_least_important():
    keep = norms.ranked_structure_mask(torch.tensor([5.0, 1.0, 3.0, 0.5, 4.0]), 0.4)
    assert keep.tolist() == [True, False, True, False, True]


@pytest.mark.parametrize("fraction, group_size, rounding_fn, pruned", [
    (0.5, 1, math.floor, 5), (0.5, 4, math.floor, 4), (0.5, 4, math.ceil, 8), (0.35, 1, math.floor, 3),
    (0.35, 1, math.ceil, 4), (0.0, 1, math.ceil, 0), (1.0, 1, math.floor, 9)])
def test_ranked_mask_counts(fraction, group_size, rounding_fn, pruned):
    keep = norms.ranked_structure_mask(torch.rand(10), fraction, group_size, rounding_fn)
    assert int((~keep).sum()) == pruned


def test_ranked_mask_ties_prune_lower_index_first():
    assert norms.ranked_structure_mask(torch.ones(4), 0.5).tolist() == [False, False, True, True]


def test_noise_changes_ranking_only_when_positive():
    importance = torch.linspace(1.0, 1.1, 64)
    clean = norms.ranked_structure_mask(importance, 0.5)
    assert torch.equal(clean, torch.arange(64) >= 32)
    same = norms.ranked_structure_mask(importance, 0.5, noise=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(same, clean)
    noisy = norms.ranked_structure_mask(importance, 0.5, noise=1.0, generator=torch.Generator().manual_seed(1))
    assert int((~noisy).sum()) == 32 and not torch.equal(noisy, clean)


def test_ranked_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="outside"):
        norms.ranked_structure_mask(torch.rand(4), 1.5)
    with pytest.raises(ValueError, match="must be 1D"):
        norms.ranked_structure_mask(torch.rand(2, 2), 0.5)
    with pytest.raises(ValueError, match="group_size=0"):
        norms.ranked_structure_mask(torch.rand(4), 0.5, group_size=0)


@pytest.mark.cuda
def test_device_follows_input():
    weight = torch.randn(4, 3, 3, 3, device="cuda")
    assert norms.filters_lp_norm(weight).device.type == "cuda"
    assert norms.ranked_structure_mask(norms.channels_lp_norm(weight), 0.5, noise=0.1).device.type == "cuda"
