"""Activation-ranked filter pruners (APoZ, mean activation) and their statistics collector."""
import pytest
import torch
from torch import nn

from distiller.pruning import ActivationStatsCollector
from distiller.registry import PRUNERS
from distiller.scheduler import create_model_masks_dict
from distiller.testing import TinyCNN


def meta_for(model, epoch=0):
    return {"starting_epoch": 0, "ending_epoch": 4, "frequency": 1, "current_epoch": epoch, "model": model,
            "optimizer": None}


def mask_of(pruner, model, name, epoch=0):
    masks = create_model_masks_dict(model)
    pruner.set_param_mask(dict(model.named_parameters())[name], name, masks, meta_for(model, epoch))
    return masks[name].mask


def kept_filters(mask):
    return mask.flatten(1).amax(dim=1).bool().tolist()


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = TinyCNN(width=8)
    with torch.no_grad():
        # filter 2 of conv1 is healthy in its weights, but BN shifts it far below zero: the ReLU kills it.
        net.bn1.bias[2] = -50.0
        # filter 5 is alive but weak after BN (tiny scale): smallest mean activation.
        net.bn1.weight[5] = 1e-3
    return net.eval()


def forward_some(model, batches=3):
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(4, 3, 8, 8, generator=generator))


def test_apoz_ranks_the_dead_filter_first(model):
    pruner = PRUNERS.get("ActivationAPoZRankedFilterPruner")(
        name="apoz", group_type="Filters", desired_sparsity=0.125, weights=["conv1.weight"], model=model)
    forward_some(model)
    kept = kept_filters(mask_of(pruner, model, "conv1.weight"))
    assert kept == [i != 2 for i in range(8)]


def test_mean_activation_ranks_the_weak_filter_first(model):
    with torch.no_grad():
        model.bn1.bias[2] = 0.0          # revive filter 2: filter 5 is now the only weak one
    pruner = PRUNERS.get("ActivationMeanRankedFilterPruner")(
        name="mean", group_type="3D", desired_sparsity=0.125, weights=["conv1.weight"], model=model)
    forward_some(model)
    assert kept_filters(mask_of(pruner, model, "conv1.weight")) == [i != 5 for i in range(8)]


def test_hooks_measure_after_batchnorm_and_relu(model):
    collector = ActivationStatsCollector(model, ["conv1"], "apoz")
    forward_some(model)
    apoz = collector.statistic_of("conv1")
    # after BN (bias -50) and ReLU, filter 2 is always zero; the conv output alone would be ~50% positive
    assert apoz[2].item() == 1.0
    assert (apoz[torch.arange(8) != 2] < 0.9).all()
    collector.remove()
    forward_some(model)
    assert torch.equal(collector.statistic_of("conv1"), apoz)     # no new data: the last statistic again


def test_needs_forward_passes_before_a_mask_that_prunes(model):
    pruner = PRUNERS.get("ActivationAPoZRankedFilterPruner")(
        name="apoz", group_type="Filters", desired_sparsity=0.5, weights=["conv1.weight"])
    with pytest.raises(RuntimeError, match="apoz: no activations of 'conv1' were recorded yet: activation "
                                           "ranking needs forward passes first"):
        mask_of(pruner, model, "conv1.weight")
    # the first call installed the hooks: forward passes now make it work
    forward_some(model)
    assert sum(kept_filters(mask_of(pruner, model, "conv1.weight"))) == 4


def test_zero_target_needs_no_statistics(model):
    pruner = PRUNERS.get("ActivationAPoZRankedFilterPruner_AGP")(
        name="apoz_agp", initial_sparsity=0.0, final_sparsity=0.5, group_type="Filters", weights=["conv1.weight"],
        model=model)
    assert mask_of(pruner, model, "conv1.weight", epoch=0).all()
    forward_some(model)
    assert sum(kept_filters(mask_of(pruner, model, "conv1.weight", epoch=3))) == 4
    assert not kept_filters(mask_of(pruner, model, "conv1.weight", epoch=3))[2]


def test_state_dict_is_plain_and_restores_statistics(model):
    pruner = PRUNERS.get("ActivationMeanRankedFilterPruner")(
        name="mean", group_type="Filters", desired_sparsity=0.25, weights=["conv1.weight"], model=model)
    forward_some(model)
    first = mask_of(pruner, model, "conv1.weight")
    state = pruner.state_dict()
    assert set(state) == {"activation_stats"} and isinstance(state["activation_stats"]["conv1"], torch.Tensor)
    resumed = PRUNERS.get("ActivationMeanRankedFilterPruner")(
        name="mean", group_type="Filters", desired_sparsity=0.25, weights=["conv1.weight"], model=model)
    resumed.load_state_dict(state)
    assert torch.equal(mask_of(resumed, model, "conv1.weight"), first)   # ranks at once, no forward pass


def test_untraceable_model_falls_back_to_rectified_conv_output():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1, bias=True)

        def forward(self, x):
            if x.sum() > 0:          # data-dependent control flow: torch.fx cannot trace it
                x = x * 1.0
            return self.conv(x)

    net = DataDependent()
    with torch.no_grad():
        net.conv.weight.fill_(1.0)
        net.conv.bias.copy_(torch.tensor([0.0, -100.0]))
    collector = ActivationStatsCollector(net, ["conv"], "apoz")
    net(torch.rand(2, 1, 3, 3))
    assert collector.statistic_of("conv").tolist() == [0.0, 1.0]


def test_activation_pruners_reject_non_filter_groups(model):
    with pytest.raises(ValueError, match="use group_type 'Filters'"):
        PRUNERS.get("ActivationAPoZRankedFilterPruner")(name="a", group_type="Channels", desired_sparsity=0.5,
                                                         weights=["conv1.weight"])
    with pytest.raises(ValueError, match="unknown activation statistic"):
        ActivationStatsCollector(model, ["conv1"], "median")
    with pytest.raises(ValueError, match="no module named 'conv9'"):
        ActivationStatsCollector(model, ["conv9"], "apoz")


def test_dataparallel_wrapped_model_is_traced_through(model):
    wrapped = nn.DataParallel(model)
    pruner = PRUNERS.get("ActivationAPoZRankedFilterPruner")(
        name="apoz", group_type="Filters", desired_sparsity=0.125, weights=["module.conv1.weight"], model=wrapped)
    forward_some(wrapped)
    assert kept_filters(mask_of(pruner, wrapped, "module.conv1.weight")) == [i != 2 for i in range(8)]


def test_statistics_restart_when_thinning_changes_the_channel_count(model):
    import distiller
    collector = ActivationStatsCollector(model, ["conv1"], "apoz")
    forward_some(model)
    assert collector.statistic_of("conv1").shape == (8,)
    forward_some(model, batches=1)  # a partial accumulation over 8 channels is pending
    masks = create_model_masks_dict(model)
    mask = torch.ones_like(model.conv1.weight)
    mask[:3] = 0
    masks["conv1.weight"].mask = mask
    with torch.no_grad():
        model.conv1.weight.mul_(mask)
    distiller.thinning.remove_filters(model, masks, dummy_input=torch.randn(1, 3, 8, 8))
    forward_some(model)
    assert collector.statistic_of("conv1").shape == (5,)
