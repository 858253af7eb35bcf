"""perform_sensitivity_analysis and sensitivities_to_csv."""
import csv

import pytest
import torch
from torch import nn

from distiller import perform_sensitivity_analysis, sensitivities_to_csv
from distiller.errors import ArgumentError, UnmatchedNameError


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 1, bias=False), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(1.0, 9.0).reshape(4, 2, 1, 1))   # filter L1 norms 3, 7, 11, 15
    return net


def zeros_of(name):
    """A test function that reports how many elements of the tested parameter are zero."""
    def test(model):
        return (int((model.get_parameter(name) == 0).sum()), 0.0, 0.0)
    return test


@pytest.mark.parametrize("group, expected", [("element", [0, 4, 8]), ("filter", [0, 4, 6]), ("channel", [0, 4, 4])])
def test_each_level_prunes_a_copy_from_the_original_weights(model, group, expected):
    # structure ranking always keeps one structure: 3 of 4 filters, 1 of 2 channels at level 1.0
    original = model[0].weight.clone()
    sens = perform_sensitivity_analysis(model, ["0.weight", "2.bias"], [0.0, 0.5, 1.0], zeros_of("0.weight"), group)
    assert list(sens) == ["0.weight"]  # the 1-D bias is skipped
    assert [scores[0] for scores in sens["0.weight"].values()] == expected
    assert list(sens["0.weight"]) == [0.0, 0.5, 1.0]
    assert torch.equal(model[0].weight, original)


def test_filter_ranking_prunes_the_weakest_filters_first(model):
    def surviving_filters(model):
        return (model[0].weight.flatten(1).abs().sum(1).nonzero().flatten().tolist(),)

    sens = perform_sensitivity_analysis(model, ["0.weight"], [0.25, 0.5], surviving_filters, "filter")
    assert sens["0.weight"] == {0.25: ([1, 2, 3],), 0.5: ([2, 3],)}


def test_arguments_are_checked(model):
    with pytest.raises(ArgumentError, match="unknown sensitivity group 'filters'"):
        perform_sensitivity_analysis(model, ["0.weight"], [0.1], zeros_of("0.weight"), "filters")
    with pytest.raises(UnmatchedNameError, match="'0.wieght' matches no parameter"):
        perform_sensitivity_analysis(model, ["0.wieght"], [0.1], zeros_of("0.weight"), "element")
    with pytest.raises(ArgumentError, match="outside"):
        perform_sensitivity_analysis(model, ["0.weight"], [1.5], zeros_of("0.weight"), "element")


def test_sensitivities_to_csv(tmp_path):
    path = tmp_path / "sensitivity.csv"
    sensitivities_to_csv({"conv.weight": {0.0: (91.0, 99.5, 0.3), 0.5: (88.0, 99.0, 0.4)}}, str(path))
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["parameter", "sparsity", "top1", "top5", "loss"], ["conv.weight", "0.0", "91.0", "99.5", "0.3"],
                    ["conv.weight", "0.5", "88.0", "99.0", "0.4"]]


def zero_filters_everywhere(model):
    """Which output positions of the residual stream are zero in each tensor that holds them."""
    def zero(tensor, dim=0):
        norms = tensor.detach().abs().transpose(0, dim).reshape(tensor.shape[dim], -1).sum(1)
        return norms.eq(0).nonzero().flatten().tolist()
    return (zero(model.conv1.weight), zero(model.bn1.weight), zero(model.block_conv2.weight),
            zero(model.block_bn2.bias), zero(model.block_conv1.weight, dim=1), zero(model.fc.weight, dim=1))


def test_filter_sensitivity_with_an_example_input_prunes_the_coupled_layers_as_thinning_would():
    from distiller.testing import TinyResidualNet
    torch.manual_seed(0)
    model = TinyResidualNet(width=8)
    with torch.no_grad():
        for bn in (model.bn1, model.block_bn2):
            bn.bias.uniform_(0.5, 1.0)  # non-zero, so zeroing shows
    original = {name: p.clone() for name, p in model.named_parameters()}
    weakest = model.conv1.weight.detach().abs().flatten(1).sum(1).argsort()[:4].sort().values.tolist()

    sens = perform_sensitivity_analysis(model, ["conv1.weight"], [0.5], zero_filters_everywhere, "filter",
                                        dummy_input=torch.zeros(1, 3, 8, 8))
    # conv1's 4 weakest filters are removed from the whole residual stream: the block's last conv adds to it,
    # both BatchNorms pass it, the block's first conv and the classifier read it
    assert sens["conv1.weight"][0.5] == (weakest,) * 6
    alone = perform_sensitivity_analysis(model, ["conv1.weight"], [0.5], zero_filters_everywhere, "filter")
    assert alone["conv1.weight"][0.5] == (weakest, [], [], [], [], [])
    assert all(torch.equal(p, original[name]) for name, p in model.named_parameters())


def test_channel_sensitivity_with_an_example_input_zeroes_the_producing_filters():
    from distiller.testing import TinyResidualNet
    torch.manual_seed(1)
    model = TinyResidualNet(width=8)
    weakest = model.block_conv2.weight.detach().abs().transpose(0, 1).flatten(1).sum(1).argsort()[:2]

    def zeros(model):
        return (model.block_conv1.weight.detach().flatten(1).abs().sum(1).eq(0).nonzero().flatten().tolist(),)

    sens = perform_sensitivity_analysis(model, ["block_conv2.weight"], [0.25], zeros, "channel",
                                        dummy_input=torch.zeros(1, 3, 8, 8))
    assert sens["block_conv2.weight"][0.25] == (weakest.sort().values.tolist(),)


def test_no_prunable_weight_is_an_argument_error(model):
    with pytest.raises(ArgumentError, match="prunes 2D or 4D weights .* none of the 1 parameters given"):
        perform_sensitivity_analysis(model, ["2.bias"], [0.5], zeros_of("0.weight"), "element")


def test_levels_that_zero_nothing_reuse_one_test_of_the_unpruned_model(model):
    calls, results = [], []

    def test(model):
        calls.append(int((model[0].weight == 0).sum()) + int((model[2].weight == 0).sum()))
        return (calls[-1],)

    # level 0 prunes nothing; 10% of conv's 4 filters rounds down to none; fc has 3 filters: 10% -> none
    sens = perform_sensitivity_analysis(model, ["0.weight", "2.weight"], [0.0, 0.1, 0.5], test, "filter",
                                        on_result=lambda *result: results.append(result))
    assert calls == [0, 4, 4]  # the unpruned model once, then conv at 50% (2 filters x 2), fc at 50% (1 row x 4)
    assert sens["0.weight"] == {0.0: (0,), 0.1: (0,), 0.5: (4,)} and sens["2.weight"][0.1] == (0,)
    assert results == [(name, level, sens[name][level]) for name in sens for level in (0.0, 0.1, 0.5)]
