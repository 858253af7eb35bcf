"""Feature-map reconstruction channel pruning, and the AGP structure pruners."""
import math

import pytest
import torch
from torch import nn

import distiller.norms
from distiller.registry import PRUNERS
from distiller.scheduler import create_model_masks_dict


def meta_for(model, epoch=0, ending_epoch=5):
    return {"starting_epoch": 0, "ending_epoch": ending_epoch, "frequency": 1, "current_epoch": epoch,
            "model": model, "optimizer": None}


def mask_of(pruner, model, name, epoch=0, masks=None):
    masks = masks if masks is not None else create_model_masks_dict(model)
    pruner.set_param_mask(dict(model.named_parameters())[name], name, masks, meta_for(model, epoch))
    return masks[name].mask


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 6, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv(torch.relu(self.stem(x)))


def correlated_inputs(batches=6):
    """Inputs whose channels are strongly correlated, so kept channels can stand in for pruned ones."""
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(batches, 4, 1, 8, 8, generator=generator)
    return list(base.expand(-1, -1, 3, -1, -1) + 0.05 * torch.randn(batches, 4, 3, 8, 8, generator=generator))


def test_fm_reconstruction_beats_plain_channel_zeroing():
    torch.manual_seed(0)
    model = TwoLayer().eval()
    pruner = PRUNERS.get("FMReconstructionChannelPruner")(name="fm", group_type="Channels", desired_sparsity=0.5,
                                                          weights=["conv.weight"], model=model)
    inputs = correlated_inputs()
    with torch.no_grad():
        reference = [model(x) for x in inputs]
    original = model.conv.weight.detach().clone()
    mask = mask_of(pruner, model, "conv.weight")
    kept = mask.amax(dim=(0, 2, 3))
    assert kept.sum() == 4 and torch.equal(mask, kept.view(1, 8, 1, 1).expand_as(mask))
    assert (model.conv.weight[:, kept == 0] == 0).all()
    with torch.no_grad():
        refit_error = sum((model(x) - y).square().sum() for x, y in zip(inputs, reference))
        model.conv.weight.copy_(original * mask)
        zeroing_error = sum((model(x) - y).square().sum() for x, y in zip(inputs, reference))
    assert refit_error < 0.5 * zeroing_error


def test_fm_reconstruction_of_a_linear_layer_is_exact_for_redundant_inputs():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3, bias=False)
    pruner = PRUNERS.get("FMReconstructionChannelPruner")(name="fm", group_type="Channels", desired_sparsity=0.5,
                                                          weights=["weight"], model=layer)
    base = torch.randn(64, 2)
    x = torch.cat([base, 2.0 * base], dim=1)          # columns 2, 3 duplicate 0, 1
    with torch.no_grad():
        reference = layer(x)
    mask_of(pruner, layer, "weight")
    with torch.no_grad():
        assert torch.allclose(layer(x), reference, atol=1e-4)


def test_fm_reconstruction_errors():
    model = TwoLayer()
    pruner = PRUNERS.get("FMReconstructionChannelPruner")(name="fm", group_type="Channels", desired_sparsity=0.5,
                                                          weights=["conv.weight"])
    with pytest.raises(RuntimeError, match="fm: no inputs of 'conv.weight' were recorded yet"):
        mask_of(pruner, model, "conv.weight")
    model(torch.randn(1, 3, 8, 8))       # 10 rows < 4 kept channels * 9 unknowns
    with pytest.raises(RuntimeError, match="10 sampled input rows for 36 unknowns"):
        mask_of(pruner, model, "conv.weight")
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="'0.weight' is not the weight of a Linear or Conv2d layer with groups=1"):
        PRUNERS.get("FMReconstructionChannelPruner")(name="fm", group_type="Channels", desired_sparsity=0.5,
                                                     weights=["0.weight"], model=grouped)
    same = nn.Sequential(nn.Conv2d(4, 4, 3, padding="same"))
    with pytest.raises(ValueError, match="'0.weight' is not the weight .* numeric zero padding"):
        PRUNERS.get("FMReconstructionChannelPruner")(name="fm", group_type="Channels", desired_sparsity=0.5,
                                                     weights=["0.weight"], model=same)


def test_fm_reconstruction_takes_distillers_arguments():
    torch.manual_seed(0)
    model = TwoLayer().eval()
    with torch.no_grad():
        model.conv.weight.mul_(torch.arange(1.0, 9.0).view(1, 8, 1, 1))  # channel c's L1 norm grows with c
    pruner = PRUNERS.get("FMReconstructionChannelPruner")("fm", "Channels", 0.5, ["conv.weight"], None, None,
                                                          distiller.norms.l1_norm, model=model)
    for x in correlated_inputs():
        model(x)
    mask = mask_of(pruner, model, "conv.weight")
    assert mask.amax(dim=(0, 2, 3)).tolist() == [0.0] * 4 + [1.0] * 4  # the 4 weakest channels by L1 norm
    with pytest.raises(ValueError, match="group_type must be 'Channels', got 'Filters'"):
        PRUNERS.get("FMReconstructionChannelPruner")("fm", "Filters", 0.5, ["conv.weight"])
    with pytest.raises(ValueError, match="argument 'magnitude_fn' expects a callable or None, got 'l1'"):
        PRUNERS.get("FMReconstructionChannelPruner")("fm", "Channels", 0.5, ["conv.weight"], magnitude_fn="l1")


@pytest.fixture
def convs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(3, 16, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(1.0, 17.0).view(16, 1, 1, 1).expand_as(model[0].weight))
    return model


def test_l1_agp_follows_the_cubic_schedule(convs):
    pruner = PRUNERS.get("L1RankedStructureParameterPruner_AGP")(
        name="agp", initial_sparsity=0.1, final_sparsity=0.5, group_type="Filters", weights=["0.weight"])
    pruned = []
    for epoch in range(5):
        target = 0.5 + (0.1 - 0.5) * (1 - epoch / 4) ** 3
        mask = mask_of(pruner, convs, "0.weight", epoch=epoch)
        pruned.append(int((mask.flatten(1).amax(dim=1) == 0).sum()))
        assert pruned[-1] == math.floor(target * 16)
        assert (mask.flatten(1).amax(dim=1)[:pruned[-1]] == 0).all()     # the weakest filters
    assert pruned == [1, 5, 7, 7, 8]


def test_agp_leader_shares_random_choice_within_a_step(convs):
    pruner = PRUNERS.get("RandomRankedFilterPruner_AGP")(
        name="agp", initial_sparsity=0.25, final_sparsity=0.5, group_type="Filters",
        weights=["0.weight", "1.weight"], group_dependency="Leader")
    for epoch in range(3):
        masks = create_model_masks_dict(convs)
        first = mask_of(pruner, convs, "0.weight", epoch, masks)
        second = mask_of(pruner, convs, "1.weight", epoch, masks)
        assert torch.equal(first, second)


@pytest.mark.parametrize("class_name", [
    "L1RankedStructureParameterPruner_AGP", "L2RankedStructureParameterPruner_AGP", "GradientRankedFilterPruner_AGP",
    "RandomRankedFilterPruner_AGP", "BernoulliFilterPruner_AGP", "ActivationAPoZRankedFilterPruner_AGP",
    "ActivationMeanRankedFilterPruner_AGP"])
def test_every_agp_structure_pruner_reaches_its_final_target(convs, class_name):
    pruner = PRUNERS.get(class_name)(name="agp", initial_sparsity=0.0, final_sparsity=0.5, group_type="Filters",
                                     weights=["0.weight"])
    assert mask_of(pruner, convs, "0.weight", epoch=0).all()           # 0% at the start needs no data
    convs[0].weight.grad = torch.randn_like(convs[0].weight)
    convs[0](torch.randn(2, 3, 6, 6))                                  # hooks were installed at the first call
    mask = mask_of(pruner, convs, "0.weight", epoch=4)
    dropped = int((mask.flatten(1).amax(dim=1) == 0).sum())
    if class_name.startswith("Bernoulli"):
        assert 1 <= dropped <= 15
    else:
        assert dropped == 8


def test_agp_validates_its_arguments():
    with pytest.raises(ValueError, match="final_sparsity=0.2 is below initial_sparsity=0.5"):
        PRUNERS.get("L1RankedStructureParameterPruner_AGP")(name="a", initial_sparsity=0.5, final_sparsity=0.2,
                                                            group_type="Filters", weights=["w"])
    with pytest.raises(ValueError, match="unknown group_type 'Filterz'"):
        PRUNERS.get("L1RankedStructureParameterPruner_AGP")(name="a", initial_sparsity=0.1, final_sparsity=0.2,
                                                            group_type="Filterz", weights=["w"])
