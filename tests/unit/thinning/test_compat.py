"""Distiller's recipe helpers: get_normalized_recipe, execute_thinning_recipes_list."""
import pytest
import torch
from torch import nn

from distiller.errors import UserError
from distiller.scheduler import create_model_masks_dict
from distiller.thinning import (ThinningError, ThinningRecipe, execute_thinning_recipes_list, get_normalized_recipe,
                                resnet_cifar_remove_layers)


def two_convs():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 3))


def test_get_normalized_recipe_drops_dataparallel_prefixes_from_any_recipe_form():
    modules = {"module.0": {"out_channels": [0, 2]}, "module.1": {"in_channels": [0, 2]}}
    expected = {"0": {"out_channels": [0, 2]}, "1": {"in_channels": [0, 2]}}
    assert get_normalized_recipe(modules).modules == expected
    assert get_normalized_recipe(ThinningRecipe(modules)).modules == expected
    assert get_normalized_recipe({"kind": "thinning", "modules": modules}).modules == expected


def test_recipes_replay_in_order_and_slice_the_masks():
    model = two_convs()
    kept_weight = model[0].weight[[0, 3]].clone()
    masks = create_model_masks_dict(model)
    # filter c keeps its first c elements: the kept filters are recognisable by their mask counts
    masks["0.weight"].mask = (torch.arange(27) < torch.arange(4).reshape(4, 1)).reshape(4, 3, 3, 3)
    first = ThinningRecipe({"0": {"out_channels": [0, 2, 3]}, "1": {"in_channels": [0, 2, 3]}})
    second = {"kind": "thinning", "modules": {"module.0": {"out_channels": [0, 2]},
                                              "module.1": {"in_channels": [0, 2]}}}
    assert execute_thinning_recipes_list(model, masks, [first, second]) is model
    assert model[0].out_channels == 2 and model[1].weight.shape == (2, 2, 3, 3)
    torch.testing.assert_close(model[0].weight, kept_weight)
    assert masks["0.weight"].mask.sum(dim=(1, 2, 3)).tolist() == [0, 3]
    assert model(torch.randn(1, 3, 7, 7)).shape == (1, 2, 3, 3)


def test_a_recipe_that_does_not_fit_changes_nothing():
    model = two_convs()
    with pytest.raises(ThinningError):
        execute_thinning_recipes_list(model, None, [{"0": {"out_channels": [0, 9]}}])
    assert model[0].out_channels == 4


def test_resnet_cifar_remove_layers_names_the_replacement():
    with pytest.raises(UserError, match="remove_filters or contract_model"):
        resnet_cifar_remove_layers(two_convs())
