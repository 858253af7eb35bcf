"""LowRankLinear and replacing a model's Linear layers by it."""
import logging

import pytest
import torch
from torch import nn

from distiller.decomposition import LowRankLinear, low_rank_decompose
from distiller.errors import ArgumentError, UnmatchedNameError, UserError


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 20, bias=False), nn.ReLU(),
                         nn.Unflatten(1, (1, 20)), nn.Conv1d(1, 1, 1), nn.Flatten(), nn.Linear(20, 5))


def test_full_rank_low_rank_linear_computes_what_the_dense_layer_computed():
    dense = nn.Linear(24, 16)
    x = torch.randn(3, 24)
    torch.testing.assert_close(LowRankLinear.from_linear(dense, 16)(x), dense(x), atol=1e-5, rtol=1e-5)


def test_low_rank_linear_keeps_the_bias_and_is_two_thin_layers():
    dense = nn.Linear(24, 16)
    low = LowRankLinear.from_linear(dense, 4)
    assert (low.project.weight.shape, low.expand.weight.shape) == ((4, 24), (16, 4))
    assert low.project.bias is None
    torch.testing.assert_close(low.expand.bias, dense.bias)
    assert low.expand.bias is not dense.bias  # a copy: training one does not change the other


def test_parameter_count_is_rank_times_in_plus_out_plus_bias():
    low = LowRankLinear.from_linear(nn.Linear(100, 60), 10)
    assert sum(p.numel() for p in low.parameters()) == 10 * (100 + 60) + 60
    unbiased = LowRankLinear.from_linear(nn.Linear(100, 60, bias=False), 10)
    assert sum(p.numel() for p in unbiased.parameters()) == 10 * (100 + 60)


def test_output_error_decreases_with_rank():
    torch.manual_seed(3)
    dense = nn.Linear(32, 32)
    x = torch.randn(64, 32)
    errors = [(LowRankLinear.from_linear(dense, r)(x) - dense(x)).norm().item() for r in (2, 8, 16, 24, 32)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))
    assert errors[-1] < 1e-4


def test_low_rank_decompose_replaces_only_the_named_layers():
    model = mlp()
    x = torch.randn(2, 40)
    ranks = low_rank_decompose(model, ["0", "2"], rank=5)
    assert ranks == {"0": 5, "2": 5}
    assert isinstance(model[0], LowRankLinear) and isinstance(model[2], LowRankLinear)
    assert type(model[7]) is nn.Linear
    assert model[2].expand.bias is None
    assert model(x).shape == (2, 5)


def test_energy_picks_each_layers_rank():
    model = nn.Sequential(nn.Linear(6, 6, bias=False), nn.Linear(6, 6, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.diag(torch.tensor([8.0, 5.0, 3.0, 1.0, 0.5, 0.1])))
        model[1].weight.copy_(torch.diag(torch.tensor([4.0, 2.0, 2.0, 1.0, 1.0, 0.0])))
    # cumulative energy fractions: 0.645, 0.897, ... and 0.615, 0.769, 0.923, ...
    assert low_rank_decompose(model, ["0", "1"], energy=0.85) == {"0": 2, "1": 3}
    assert model[0].rank == 2 and model[1].rank == 3


def test_decomposition_follows_the_layers_dtype():
    model = nn.Sequential(nn.Linear(8, 8).double())
    low_rank_decompose(model, ["0"], rank=3)
    assert model[0].project.weight.dtype == torch.float64


def test_a_rank_that_keeps_more_weights_than_the_dense_layer_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="distiller.decomposition.replace"):
        low_rank_decompose(nn.Sequential(nn.Linear(10, 10)), ["0"], rank=6)
    assert "rank 6 of '0' keeps 120 weights, the dense layer has 100" in caplog.text


@pytest.mark.parametrize("rank", [0, -2, 20, 25, 3.5])
def test_a_rank_that_does_not_reduce_the_layer_is_refused(rank):
    with pytest.raises(ArgumentError, match=f"rank {rank!r} does not reduce '2' \\(20x30\\): .*1 to 19"):
        low_rank_decompose(mlp(), ["2"], rank=rank)


@pytest.mark.parametrize("energy", [0.0, 1.01, -1])
def test_energy_outside_the_unit_interval_is_refused(energy):
    with pytest.raises(ArgumentError, match=f"energy {energy!r} is not a fraction"):
        low_rank_decompose(mlp(), ["0"], energy=energy)


def test_energy_keeping_every_singular_value_is_refused_naming_the_layer():
    with pytest.raises(ArgumentError, match="energy 1.0 keeps all 20 singular values of '2'"):
        low_rank_decompose(mlp(), ["2"], energy=1.0)


def test_a_name_that_is_no_module_is_refused_with_a_suggestion():
    with pytest.raises(UnmatchedNameError, match="'22' matches no Linear layer .*did you mean '2'"):
        low_rank_decompose(mlp(), ["22"], rank=2)


def test_a_module_that_is_not_linear_is_refused_and_nothing_is_replaced():
    model = mlp()
    with pytest.raises(ArgumentError, match="'5' is a Conv1d, not an nn.Linear"):
        low_rank_decompose(model, ["0", "5"], rank=2)
    assert type(model[0]) is nn.Linear


def test_the_output_projection_of_attention_is_refused():
    model = nn.Sequential(nn.MultiheadAttention(8, 2))
    with pytest.raises(ArgumentError, match="'0.out_proj' is the output projection of a MultiheadAttention"):
        low_rank_decompose(model, ["0.out_proj"], rank=2)


@pytest.mark.parametrize("kwargs, message", [({}, "exactly one of rank and energy"),
                                             ({"rank": 2, "energy": 0.9}, "exactly one of rank and energy")])
def test_rank_and_energy_are_exclusive(kwargs, message):
    with pytest.raises(UserError, match=message):
        low_rank_decompose(mlp(), ["0"], **kwargs)


@pytest.mark.parametrize("names", [[], "0"])
def test_layer_names_must_be_a_non_empty_list(names):
    with pytest.raises(ArgumentError, match="non-empty list"):
        low_rank_decompose(mlp(), names, rank=2)
