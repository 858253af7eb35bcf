"""Ranked structure pruners (L1/L2, gradient, random, Bernoulli, random level, threshold) on tiny tensors."""
import pytest
import torch
from torch import nn

from distiller.registry import PRUNERS
from distiller.scheduler import create_model_masks_dict


def build(class_name, **kwargs):
    return PRUNERS.get(class_name)(**kwargs)


def meta_for(model, epoch=0, **extra):
    return {"starting_epoch": 0, "ending_epoch": 10, "frequency": 1, "current_epoch": epoch, "model": model,
            "optimizer": None, **extra}


def prune_all(pruner, model, names, epoch=0):
    """Calls set_param_mask for ``names`` (in that order); returns the masks."""
    masks = create_model_masks_dict(model)
    params = dict(model.named_parameters())
    for name in names:
        pruner.set_param_mask(params[name], name, masks, meta_for(model, epoch))
    return {name: masks[name].mask for name in names}


class TwoConvs(nn.Module):
    def __init__(self, filters=8):
        super().__init__()
        self.conv1 = nn.Conv2d(4, filters, 3, bias=False)
        self.conv2 = nn.Conv2d(4, filters, 3, bias=False)
        self.fc = nn.Linear(6, 4)


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = TwoConvs()
    with torch.no_grad():
        # conv1: filter f has all weights equal to (f + 1) * sign -> L1 ranking 0 < 1 < ... < 7
        for f in range(8):
            net.conv1.weight[f] = (f + 1) * torch.sign(torch.randn(4, 3, 3))
        # conv2: the reverse order
        for f in range(8):
            net.conv2.weight[f] = 8 - f
    return net


def kept_filters(mask):
    return mask.flatten(1).amax(dim=1).bool().tolist()


def test_l1_filters_prunes_exactly_the_weakest(model):
    pruner = build("L1RankedStructureParameterPruner", name="p", group_type="Filters", desired_sparsity=0.5,
                   weights=["conv1.weight"])
    mask = prune_all(pruner, model, ["conv1.weight"])["conv1.weight"]
    assert kept_filters(mask) == [False] * 4 + [True] * 4
    assert mask.shape == model.conv1.weight.shape and mask.dtype == torch.bool


def test_l2_ranks_by_l2_norm():
    model = TwoConvs(filters=2)
    with torch.no_grad():
        model.conv1.weight.zero_()
        model.conv1.weight[0, 0, 0, 0] = 3.0            # L1 3, L2 3
        model.conv1.weight[1, :2, 0, 0] = 1.6           # L1 3.2, L2 2.26
    l1 = build("L1RankedStructureParameterPruner", name="a", group_type="3D", desired_sparsity=0.5,
               weights="conv1.weight")
    l2 = build("L2RankedStructureParameterPruner", name="b", group_type="3D", desired_sparsity=0.5,
               weights="conv1.weight")
    assert kept_filters(prune_all(l1, model, ["conv1.weight"])["conv1.weight"]) == [False, True]
    assert kept_filters(prune_all(l2, model, ["conv1.weight"])["conv1.weight"]) == [True, False]


def test_channels_rows_cols_kernels(model):
    with torch.no_grad():
        model.conv1.weight[:, 1] *= 0.01
        model.fc.weight.copy_(torch.arange(24, dtype=torch.float32).reshape(4, 6))
    channels = build("L1RankedStructureParameterPruner", name="c", group_type="Channels", desired_sparsity=0.25,
                     weights=["conv1.weight"])
    mask = prune_all(channels, model, ["conv1.weight"])["conv1.weight"]
    assert mask.sum(dim=(0, 2, 3)).tolist() == [72.0, 0.0, 72.0, 72.0]
    rows = build("L1RankedStructureParameterPruner", name="r", group_type="Rows", desired_sparsity=0.5,
                 weights=["fc.weight"])
    assert prune_all(rows, model, ["fc.weight"])["fc.weight"].sum(dim=1).tolist() == [0.0, 0.0, 6.0, 6.0]
    cols = build("L1RankedStructureParameterPruner", name="k", group_type="Cols", desired_sparsity=0.5,
                 weights=["fc.weight"])
    assert prune_all(cols, model, ["fc.weight"])["fc.weight"].sum(dim=0).tolist() == [0.0] * 3 + [4.0] * 3
    kernels = build("L1RankedStructureParameterPruner", name="k2", group_type="2D", desired_sparsity=0.25,
                    weights=["conv1.weight"])
    mask = prune_all(kernels, model, ["conv1.weight"])["conv1.weight"]
    assert int((mask.sum(dim=(2, 3)) == 0).sum()) == 8      # 25% of 32 kernels
    assert (mask[:, 1].sum(dim=(1, 2)) == 0).all()           # the weakened channel's kernels went first


def test_blocks(model):
    pruner = build("L1RankedStructureParameterPruner", name="b", group_type="Blocks", desired_sparsity=0.5,
                   weights=["conv1.weight"], kwargs={"block_shape": [1, 2, 3, 3]})
    mask = prune_all(pruner, model, ["conv1.weight"])["conv1.weight"]
    blocks = mask.reshape(8, 2, 2 * 9).amax(dim=2)
    assert blocks[:4].sum() == 0 and blocks[4:].sum() == 8    # filters 0-3 (both channel blocks) pruned


def test_whole_layers_ranked_across_weights(model):
    pruner = build("L1RankedStructureParameterPruner", name="l", group_type="4D", desired_sparsity=0.5,
                   weights=["conv1.weight", "conv2.weight", "fc.weight"])
    with torch.no_grad():
        model.fc.weight.fill_(0.001)
    masks = prune_all(pruner, model, ["conv1.weight", "conv2.weight", "fc.weight"])
    assert masks["fc.weight"].sum() == 0          # smallest mean |w|: floor(0.5 * 3) = 1 layer
    assert masks["conv1.weight"].all() and masks["conv2.weight"].all()


@pytest.mark.parametrize("fraction, group_size, rounding_fn, pruned", [
    (0.3, 1, "floor", 2), (0.3, 2, "floor", 2), (0.3, 4, "floor", 0), (0.3, 4, "ceil", 4), (0.4, 2, "round", 4)])
def test_group_size_and_rounding(model, fraction, group_size, rounding_fn, pruned):
    pruner = build("L1RankedStructureParameterPruner", name="g", group_type="Filters", desired_sparsity=fraction,
                   weights=["conv1.weight"], group_size=group_size, rounding_fn=rounding_fn)
    kept = kept_filters(prune_all(pruner, model, ["conv1.weight"])["conv1.weight"])
    assert kept == [False] * pruned + [True] * (8 - pruned)


@pytest.mark.parametrize("order", [["conv1.weight", "conv2.weight"], ["conv2.weight", "conv1.weight"]])
def test_leader_dependency_shares_the_leaders_choice(model, order):
    pruner = build("L1RankedStructureParameterPruner", name="lead", group_type="Filters", desired_sparsity=0.5,
                   weights=["conv1.weight", "conv2.weight"], group_dependency="Leader")
    masks = prune_all(pruner, model, order)
    # conv2's own ranking is the reverse; it follows the leader conv1 anyway, whatever the call order
    assert kept_filters(masks["conv2.weight"]) == kept_filters(masks["conv1.weight"]) == [False] * 4 + [True] * 4


def test_leader_dependency_with_random_ranking_is_computed_once_per_step(model):
    pruner = build("RandomRankedFilterPruner", name="lead", group_type="Filters", desired_sparsity=0.5,
                   weights=["conv1.weight", "conv2.weight"], group_dependency="Leader")
    choices = set()
    for epoch in range(4):
        masks = prune_all(pruner, model, ["conv1.weight", "conv2.weight"], epoch=epoch)
        assert kept_filters(masks["conv1.weight"]) == kept_filters(masks["conv2.weight"])
        choices.add(tuple(kept_filters(masks["conv1.weight"])))
    assert len(choices) > 1        # a new draw at each step


def test_leader_dependency_needs_matching_structures(model):
    pruner = build("L1RankedStructureParameterPruner", name="lead", group_type="Filters", desired_sparsity=0.5,
                   weights=["conv1.weight", "fc.weight"], group_dependency="Leader")
    with pytest.raises(ValueError, match="'fc.weight' has 4 Filters but the leader 'conv1.weight' has 8"):
        prune_all(pruner, model, ["conv1.weight", "fc.weight"])


def test_noise_changes_the_ranking_only_when_positive(model):
    with torch.no_grad():
        model.conv1.weight.copy_(1.0 + 1e-3 * torch.arange(8.0).view(8, 1, 1, 1).expand(8, 4, 3, 3))
    masks = []
    for noise in (0.0, 0.0, 5.0, 5.0):
        torch.manual_seed(len(masks))
        pruner = build("L1RankedStructureParameterPruner", name="n", group_type="Filters", desired_sparsity=0.5,
                       weights=["conv1.weight"], noise=noise)
        masks.append(kept_filters(prune_all(pruner, model, ["conv1.weight"])["conv1.weight"]))
    assert masks[0] == masks[1] == [False] * 4 + [True] * 4
    assert sum(masks[2]) == sum(masks[3]) == 4
    assert masks[2] != masks[0] and masks[3] != masks[0]


def test_gradient_ranking(model):
    pruner = build("GradientRankedFilterPruner", name="t", group_type="Filters", desired_sparsity=0.25,
                   weights=["conv2.weight"])
    with pytest.raises(ValueError, match="t: 'conv2.weight': gradient ranking needs param.grad"):
        prune_all(pruner, model, ["conv2.weight"])
    grad = torch.ones_like(model.conv2.weight)
    grad[6:] = 100.0          # the smallest weights (filters 6, 7) get large gradients: |w * g| keeps them
    grad[2:4] = 0.001
    model.conv2.weight.grad = grad
    assert kept_filters(prune_all(pruner, model, ["conv2.weight"])["conv2.weight"]) == \
        [True, True, False, False, True, True, True, True]


def test_random_ranking_prunes_exact_count_with_fresh_draws(model):
    pruner = build("RandomRankedFilterPruner", name="r", group_type="Filters", desired_sparsity=0.5,
                   weights=["conv1.weight"])
    torch.manual_seed(0)
    draws = [tuple(kept_filters(prune_all(pruner, model, ["conv1.weight"], epoch=e)["conv1.weight"]))
             for e in range(5)]
    assert all(sum(d) == 4 for d in draws) and len(set(draws)) > 1


def test_bernoulli_drops_about_the_probability():
    torch.manual_seed(0)
    wide = nn.Linear(4, 2000)
    pruner = build("BernoulliFilterPruner", name="b", group_type="Filters", desired_sparsity=0.3,
                   weights=["weight"])
    dropped = 1 - prune_all(pruner, wide, ["weight"])["weight"][:, 0].float().mean().item()
    assert 0.26 < dropped < 0.34
    tiny = nn.Linear(4, 3)
    extreme = build("BernoulliFilterPruner", name="b2", group_type="Filters", desired_sparsity=0.999,
                    weights=["weight"])
    assert prune_all(extreme, tiny, ["weight"])["weight"][:, 0].sum() >= 1   # at least one survives


def test_random_level_draws_one_level_per_step(model):
    pruner = build("RandomLevelStructureParameterPruner", name="rl", group_type="Filters",
                   sparsity_range=[0.2, 0.6], weights=["conv1.weight", "conv2.weight"])
    seen = set()
    for epoch in range(6):
        masks = prune_all(pruner, model, ["conv1.weight", "conv2.weight"], epoch=epoch)
        pruned = [8 - sum(kept_filters(m)) for m in masks.values()]
        assert pruned[0] == pruned[1] and 1 <= pruned[0] <= 4     # floor(0.2*8) .. floor(0.6*8)
        seen.add(pruned[0])
    assert len(seen) > 1
    with pytest.raises(ValueError, match=r"rl: sparsity_range=\[0.6, 0.2\] has low > high"):
        build("RandomLevelStructureParameterPruner", name="rl", group_type="Filters", sparsity_range=[0.6, 0.2],
              weights=["conv1.weight"])


def test_structure_threshold_pruner(model):
    pruner = build("StructureParameterPruner", name="s", model=model, threshold_criteria="Mean_Abs",
                   reg_regims={"conv1.weight": [4.5, "Filters"], r"fc\..*": [0.0, "Rows"]})
    assert pruner.targets() == ["conv1.weight", r"fc\..*"]
    masks = prune_all(pruner, model, ["conv1.weight"])
    assert kept_filters(masks["conv1.weight"]) == [False] * 4 + [True] * 4      # |w| = f + 1 > 4.5
    with pytest.raises(ValueError, match="argument 'threshold_criteria' expects 'Mean_Abs' or 'Max', got 'L2'"):
        build("StructureParameterPruner", name="s", model=model, threshold_criteria="L2",
              reg_regims={"conv1.weight": [0.1, "Filters"]})
    with pytest.raises(KeyError, match="s: no entry of 'reg_regims' matches parameter 'conv2.weight'"):
        prune_all(pruner, model, ["conv2.weight"])


@pytest.mark.parametrize("kwargs, message", [
    ({"group_type": "Filter"}, "unknown group_type 'Filter'"),
    ({"group_type": "Blocks"}, "needs kwargs: {block_shape"),
    ({"kwargs": {"block_size": [1]}}, "unknown kwargs \\['block_size'\\]"),
    ({"group_dependency": "leader"}, "argument 'group_dependency' expects 'Leader' or 'Graph' or None, got 'leader'"),
    ({"group_type": "4D", "group_dependency": "Leader"}, "'Leader' does not apply to group_type '4D'"),
    ({"desired_sparsity": 1.0}, "desired_sparsity"),
    ({"rounding_fn": "trunc"}, "rounding_fn 'trunc' is neither callable"),
    ({"group_size": 0}, "argument 'group_size' expects an integer > 0, got 0"),
    ({"noise": -1}, "noise"),
    ({"weights": []}, "argument 'weights' expects a list of string, got \\[\\]"),
])
def test_constructor_rejects_bad_arguments(kwargs, message):
    args = {"name": "bad", "group_type": "Filters", "desired_sparsity": 0.5, "weights": ["conv1.weight"], **kwargs}
    with pytest.raises(ValueError, match=message):
        build("L1RankedStructureParameterPruner", **args)
