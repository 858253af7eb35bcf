"""Recipes replay on fresh models (also through checkpoints); surgery slices optimizer state, gradients and
masks consistently, and rejects what it cannot do before changing anything."""
import io

import pytest
import torch
from torch import nn

from distiller import CompressionScheduler
from distiller.apputils import load_checkpoint, save_checkpoint
from distiller.models import create_model
from distiller.thinning import ThinningError, ThinningRecipe, apply_thinning_recipe, remove_filters


def _resnet20():
    torch.manual_seed(0)
    return create_model(False, "cifar10", "resnet20_cifar", parallel=False, device_ids=-1).eval()


def _thinned_resnet20(kit, scheduler=None, optimizer=None):
    model = scheduler.model if scheduler is not None else _resnet20()
    kit.randomize_batchnorm(model, kit.generator)
    masks = kit.prune_randomly(model, 0.5, "Filters", kit.generator)
    recipe = remove_filters(model, masks, optimizer=optimizer, dummy_input=torch.randn(1, 3, 32, 32),
                            scheduler=scheduler)
    return model, recipe


def test_recipe_replays_on_a_fresh_model_from_plain_data(kit):
    thinned, recipe = _thinned_resnet20(kit)
    buffer = io.BytesIO()
    torch.save({"recipe": recipe.to_record(), "weights": thinned.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    fresh = apply_thinning_recipe(_resnet20(), saved["recipe"])
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in saved["weights"].items()}
    fresh.load_state_dict(saved["weights"])
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(fresh.eval()(x), thinned(x))
    assert ThinningRecipe.from_record(saved["recipe"]) == recipe


def test_load_checkpoint_rebuilds_the_thinned_shapes_and_optimizer_state(kit, tmp_path):
    scheduler = CompressionScheduler(_resnet20())
    optimizer = torch.optim.SGD(scheduler.model.parameters(), lr=0.1, momentum=0.9)
    kit.train_step(scheduler.model, optimizer, torch.randn(2, 3, 32, 32))
    thinned, recipe = _thinned_resnet20(kit, scheduler, optimizer)
    assert scheduler.model_transforms == [recipe.to_record()]
    path = save_checkpoint(0, "resnet20_cifar", thinned, optimizer=optimizer, scheduler=scheduler, dir=str(tmp_path))

    model, loaded_scheduler, loaded_optimizer, _ = load_checkpoint(_resnet20(), path)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.eval()(x), thinned(x))
    assert loaded_scheduler.model_transforms == scheduler.model_transforms
    for name, param in model.named_parameters():
        mask = loaded_scheduler.zeros_mask_dict[name].mask
        assert mask is None or mask.shape == param.shape, name
        assert loaded_optimizer.state[param]["momentum_buffer"].shape == param.shape, name


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        return self.conv2(torch.relu(self.bn(self.conv1(x))))


@pytest.mark.parametrize("optimizer_class", [torch.optim.SGD, torch.optim.Adam])
def test_optimizer_state_gradients_and_masks_are_sliced(optimizer_class):
    torch.manual_seed(0)
    model = TwoConvs()
    optimizer = (optimizer_class(model.parameters(), lr=0.1, momentum=0.9) if optimizer_class is torch.optim.SGD
                 else optimizer_class(model.parameters(), lr=0.1))
    model(torch.randn(2, 3, 5, 5)).sum().backward()
    optimizer.step()
    scheduler = CompressionScheduler(model)
    mask = torch.ones_like(model.conv2.weight, dtype=torch.bool)
    mask[:, 1] = False
    scheduler.zeros_mask_dict["conv2.weight"].mask = mask
    before = {name: {k: v.clone() for k, v in optimizer.state[p].items()} for name, p in model.named_parameters()}
    grad = model.conv1.weight.grad.clone()
    param = model.conv1.weight
    with torch.no_grad():
        model.conv1.weight[[0, 4]] = 0

    remove_filters(model, scheduler.zeros_mask_dict, optimizer=optimizer, dummy_input=torch.randn(1, 3, 5, 5),
                   scheduler=scheduler)

    keep = [1, 2, 3, 5]
    assert model.conv1.weight is param and optimizer.param_groups[0]["params"][0] is param
    torch.testing.assert_close(param.grad, grad[keep])
    sliced = [key for key, value in before["conv1.weight"].items() if value.dim()]
    assert sliced == (["momentum_buffer"] if optimizer_class is torch.optim.SGD else ["exp_avg", "exp_avg_sq"])
    for key in sliced:
        torch.testing.assert_close(optimizer.state[param][key], before["conv1.weight"][key][keep])
        torch.testing.assert_close(optimizer.state[model.conv2.weight][key], before["conv2.weight"][key][:, keep])
    torch.testing.assert_close(scheduler.zeros_mask_dict["conv2.weight"].mask, mask[:, keep])
    assert model.bn.running_mean.shape == (4,) and model.bn.num_features == 4
    model(torch.randn(2, 3, 5, 5)).sum().backward()
    optimizer.step()


def test_unsliceable_optimizer_state_is_rejected_before_any_change():
    model = TwoConvs()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.state[model.conv1.weight]["flat"] = torch.zeros(model.conv1.weight.numel())
    with torch.no_grad():
        model.conv1.weight[0] = 0
    with pytest.raises(ThinningError, match="'flat'"):
        remove_filters(model, None, optimizer=optimizer, dummy_input=torch.randn(1, 3, 5, 5))
    assert model.conv1.out_channels == 6 and model.conv1.weight.shape[0] == 6


@pytest.mark.parametrize("modules,message", [
    ({"conv1": {"out_channels": [0, 1]}, "nope": {"out_channels": [0]}}, "'nope'"),
    ({"conv1": {"out_channels": [0, 1]}, "bn": {"num_features": [0, 9]}}, r"within \[0, 6\)"),
    ({"conv1": {"out_channels": [0, 1]}, "conv2": {"kernel_size": [0]}}, "cannot thin 'kernel_size'"),
    ({"conv1": {"out_channels": [1, 0]}}, "increasing"),
])
def test_bad_recipes_are_rejected_before_any_change(modules, message):
    model = TwoConvs()
    with pytest.raises(ThinningError, match=message):
        apply_thinning_recipe(model, ThinningRecipe(modules))
    assert model.conv1.weight.shape == (6, 3, 3, 3)


def test_recipe_applied_twice_is_a_clear_error(kit):
    thinned, recipe = _thinned_resnet20(kit)
    with pytest.raises(ThinningError, match="applied twice"):
        apply_thinning_recipe(thinned, recipe)


def test_grouped_convolution_recipe_needs_equal_counts_per_group():
    model = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ThinningError, match="same number"):
        apply_thinning_recipe(model, {"kind": "thinning", "modules": {"1": {"in_channels": [0, 1, 2]}}})


def test_dataparallel_wrapped_models_thin_with_plain_names():
    model = nn.DataParallel(TwoConvs())
    with torch.no_grad():
        model.module.conv1.weight[2] = 0
        model.module.conv1.bias[2] = 0
    recipe = remove_filters(model, None, dummy_input=torch.randn(1, 3, 5, 5))
    assert set(recipe.modules) == {"conv1", "bn", "conv2"} and model.module.conv2.in_channels == 5


def test_tied_weights_are_rejected():
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight
    model = nn.Sequential(first, second)
    with pytest.raises(ThinningError, match="share a parameter"):
        apply_thinning_recipe(model, ThinningRecipe({"0": {"out_features": [0, 1]}, "1": {"in_features": [0, 1]}}))
    assert first.weight.shape == (4, 4)
