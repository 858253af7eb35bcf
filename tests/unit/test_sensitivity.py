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
