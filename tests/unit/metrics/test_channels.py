"""Per-channel statistics of weights and activations (distiller.metrics.channels)."""
import pytest
import torch

from distiller.errors import ArgumentError
from distiller.utils import (activation_channels_apoz, activation_channels_l1, activation_channels_means,
                             non_zero_channels, norm_filters)


@pytest.fixture
def activation():
    # batch of 2, 3 channels, 2x2 maps: channel 0 all ones; channel 1 half zeros in sample 0, all zeros in
    # sample 1; channel 2 negative values (a pre-activation)
    a = torch.zeros(2, 3, 2, 2)
    a[:, 0] = 1.0
    a[0, 1, 0] = 2.0
    a[:, 2] = -1.0
    return a


def test_activation_channel_statistics(activation):
    assert activation_channels_l1(activation).tolist() == [4.0, 2.0, 4.0]        # batch mean of L1 per map
    assert activation_channels_means(activation).tolist() == [1.0, 0.5, -1.0]    # batch mean of map means
    assert activation_channels_apoz(activation).tolist() == [0.0, 75.0, 100.0]   # % of non-positive values
    assert activation_channels_l1(activation).device.type == "cpu"


def test_activation_statistics_of_fully_connected_outputs():
    fc_out = torch.tensor([[0.0, 2.0], [0.0, -4.0]])
    assert activation_channels_apoz(fc_out).tolist() == [100.0, 50.0]
    assert activation_channels_l1(fc_out).tolist() == [0.0, 3.0]
    with pytest.raises(ArgumentError, match=r"need a batch \[N, C, ...\]"):
        activation_channels_l1(torch.ones(3))


def test_weight_channel_helpers():
    w = torch.ones(4, 3, 2, 2)
    w[:, 1] = 0
    assert non_zero_channels(w).tolist() == [[0], [2]]
    assert norm_filters(w).tolist() == [8.0] * 4
    assert norm_filters(w, p=2).tolist() == pytest.approx([8 ** 0.5] * 4)
    with pytest.raises(ArgumentError, match="4D convolution weight"):
        non_zero_channels(torch.ones(2, 2))
