"""prune_and_thin: group-wise ranking, the report, exclusions, argument errors."""
import pytest
import torch
from torch import nn

from distiller.models import create_model
from distiller.summaries import model_macs, model_params
from distiller.thinning import ThinningError, apply_thinning_recipe, prune_and_thin


def _resnet20():
    torch.manual_seed(0)
    return create_model(False, "cifar10", "resnet20_cifar", parallel=False, device_ids=-1).eval()


def test_every_group_loses_its_fraction_and_the_report_is_measured():
    model = _resnet20()
    x = torch.randn(1, 3, 32, 32)
    params, macs = model_params(model), model_macs(model, x)
    model, report = prune_and_thin(model, x, 0.5, exclude=["fc"])
    assert (report.params_before, report.macs_before) == (params, macs)
    assert (report.params_after, report.macs_after) == (model_params(model), model_macs(model, x))
    assert report.macs_after < macs / 3
    widths = {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert widths["conv1"] == 8 and widths["layer1.0.conv1"] == 8 and widths["layer3.2.conv2"] == 32
    assert model.fc.in_features == 32 and model.fc.out_features == 10
    assert model(x).shape == (1, 10)
    fresh = apply_thinning_recipe(_resnet20(), report.recipe)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_a_residual_group_keeps_the_same_channels_in_every_coupled_layer():
    model = _resnet20()
    _, report = prune_and_thin(model, torch.randn(1, 3, 32, 32), 0.25)
    stream = [report.recipe.modules[name]["out_channels"] for name in
              ("conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2")]
    assert all(kept == stream[0] for kept in stream) and len(stream[0]) == 12


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 6, 1, bias=False)
        self.conv2 = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


@pytest.mark.parametrize("ranking,p", [("L1", 1), ("L2", 2)])
def test_the_weakest_filters_go(ranking, p):
    model = Chain()
    with torch.no_grad():
        model.conv1.weight.copy_(torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.5, 0.0], [5.0, 0.0], [0.1, 0.1],
                                               [1.2, 1.2]]).reshape(6, 2, 1, 1))
    norms = model.conv1.weight.reshape(6, -1).norm(p=p, dim=1)
    _, report = prune_and_thin(model, torch.randn(1, 2, 3, 3), 0.5, ranking=ranking)
    assert report.recipe.modules["conv1"]["out_channels"] == sorted(torch.argsort(norms)[3:].tolist())
    assert model.conv2.in_channels == 3


def test_channels_ranking_uses_the_reading_layer():
    model = Chain()
    with torch.no_grad():
        model.conv2.weight.zero_()
        model.conv2.weight[:, [1, 4]] = 1.0
    _, report = prune_and_thin(model, torch.randn(1, 2, 3, 3), 0.6, group_type="Channels")
    assert report.recipe.modules["conv2"]["in_channels"] == [1, 4, 5]  # 3 of 6 removed: two zero, then 0..
    assert report.channels_removed == 3


def test_excluded_layers_keep_their_filters_and_round_to_applies():
    model = _resnet20()
    _, report = prune_and_thin(model, torch.randn(1, 3, 32, 32), 0.4, exclude=[r"layer3\..*conv1"], round_to=4)
    assert all(model.get_submodule(f"layer3.{i}.conv1").out_channels == 64 for i in range(3))
    assert all(m.out_channels % 4 == 0 for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model.layer1[0].conv1.out_channels == 12


@pytest.mark.parametrize("kwargs,message", [
    ({"fraction": 1.0}, "fraction"), ({"fraction": 0.5, "group_type": "Rows"}, "'Rows'"),
    ({"fraction": 0.5, "ranking": "L3"}, "ranking"), ({"fraction": 0.5, "exclude": ["fc2"]}, "did you mean 'fc'"),
])
def test_bad_arguments_are_rejected_before_any_change(kwargs, message):
    model = _resnet20()
    with pytest.raises(ThinningError, match=message):
        prune_and_thin(model, torch.randn(1, 3, 32, 32), **kwargs)
    assert model.conv1.out_channels == 16


def test_optimizer_state_follows(kit):
    model = Chain()
    optimizer = torch.optim.Adam(model.parameters())
    kit.train_step(model, optimizer, torch.randn(2, 2, 3, 3))
    prune_and_thin(model, torch.randn(1, 2, 3, 3), 0.5, optimizer=optimizer)
    assert optimizer.state[model.conv1.weight]["exp_avg"].shape == (3, 2, 1, 1)
    kit.train_step(model, optimizer, torch.randn(2, 2, 3, 3))
