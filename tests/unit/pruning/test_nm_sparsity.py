"""N:M (2:4) semi-structured sparsity: masks, the AGP-ramped pruner from YAML, and the GPU export."""
import pytest
import torch
from torch import nn

import distiller
from distiller.errors import ArgumentError, ScheduleError
from distiller.pruning import (NMStructurePruner, is_nm_sparse, nm_group_view, nm_mask, semi_structured_ineligibility,
                               to_semi_structured)
from distiller.testing import TinyCNN, train_with_scheduler


def test_full_nm_mask_keeps_the_two_largest_of_every_four_inputs():
    weight = torch.tensor([[1.0, -4.0, 3.0, 2.0, 0.5, 0.1, -0.2, 0.3]])
    mask = nm_mask(weight, 2, 4)
    assert mask.dtype == torch.bool
    assert mask.tolist() == [[False, True, True, False, True, False, False, True]]
    assert is_nm_sparse(weight * mask, 2, 4) and not is_nm_sparse(weight, 2, 4)


def test_conv_groups_run_along_input_channels():
    torch.manual_seed(0)
    weight = torch.randn(3, 8, 2, 2)
    mask = nm_mask(weight, 2, 4)
    # at every output channel and kernel position, each group of 4 input channels keeps exactly 2
    per_group = mask.permute(0, 2, 3, 1).reshape(3, 2, 2, 2, 4).sum(dim=-1)
    assert torch.all(per_group == 2)
    assert nm_group_view(weight, 4).shape == (3 * 2 * 2 * 2, 4)


def test_partial_fraction_sparsifies_the_cheapest_groups_first():
    weight = torch.tensor([[9.0, 9.0, 9.0, 9.0, 1.0, 1.0, 0.0, 0.0, 5.0, 5.0, 4.0, 4.0]])
    mask = nm_mask(weight, 2, 4, fraction=0.34)   # one of three groups
    assert mask.tolist() == [[True] * 4 + [True, True, False, False] + [True] * 4]
    assert nm_mask(weight, 2, 4, fraction=0.0).all()


@pytest.mark.parametrize("shape, message", [((8,), "Linear"), ((4, 6), "multiple of m=4")])
def test_weights_that_groups_cannot_tile_are_refused_by_name(shape, message):
    with pytest.raises(ArgumentError, match=f"'fc.bias'.*{message}"):
        nm_mask(torch.randn(shape), 2, 4, name="fc.bias")


def _schedule(**pruner_args):
    return {"version": 1,
            "pruners": {"two_four": {"class": "NMStructurePruner", "weights": ["conv2.weight", "fc.weight"],
                                     **pruner_args}},
            "policies": [{"pruner": {"instance_name": "two_four"}, "starting_epoch": 0, "ending_epoch": 4,
                          "frequency": 1}]}


def test_yaml_pruner_ramps_the_sparse_group_fraction_to_exact_two_four(batches):
    torch.manual_seed(0)
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = distiller.config.dict_config(model, optimizer, _schedule(initial_fraction=0.2))
    sparsities = []
    for epoch in range(4):
        train_with_scheduler(model, optimizer, scheduler, batches, epochs=1, start_epoch=epoch)
        sparsities.append(distiller.sparsity(model.fc.weight))
    # groups made 2:4 one by one along the AGP curve: 0.2 of the groups (10% of weights) first, all (50%) last
    assert sparsities[0] == pytest.approx(0.5 * 0.2, abs=0.02)
    assert sparsities == sorted(sparsities) and sparsities[-1] == pytest.approx(0.5)
    assert is_nm_sparse(model.fc.weight, 2, 4) and is_nm_sparse(model.conv2.weight, 2, 4)


def test_single_epoch_policy_prunes_all_groups_at_once():
    pruner = NMStructurePruner("p", weights=["fc.weight"], n=1, m=4)
    model = TinyCNN()
    masks = distiller.create_model_masks_dict(model)
    meta = {"starting_epoch": 0, "ending_epoch": 1, "frequency": 1, "current_epoch": 0, "model": model}
    pruner.set_param_mask(model.fc.weight, "fc.weight", masks, meta)
    assert float(masks["fc.weight"].mask.float().mean()) == pytest.approx(0.25)


def test_yaml_refuses_n_not_below_m():
    with pytest.raises(ScheduleError, match="n=4 must be smaller than m=4"):
        distiller.config.dict_config(TinyCNN(), None, _schedule(n=4, m=4))


def test_eligibility_reasons_on_cpu():
    linear = nn.Linear(64, 32, bias=False)
    assert "dtype torch.float32" in semi_structured_ineligibility(linear)
    linear.half()
    assert "not 2:4 sparse" in semi_structured_ineligibility(linear)
    with torch.no_grad():
        linear.weight.mul_(nm_mask(linear.weight.float(), 2, 4).half())
    assert semi_structured_ineligibility(linear) is None
    assert "not a multiple of (32, 64)" in semi_structured_ineligibility(nn.Linear(32, 32).half())
    assert "not a Linear" in semi_structured_ineligibility(nn.Conv2d(4, 4, 1))


def test_export_refuses_a_cpu_model_with_a_clear_message():
    with pytest.raises(ArgumentError, match="needs the model on a CUDA GPU.*on cpu"):
        to_semi_structured(nn.Sequential(nn.Linear(64, 32)).half(), torch.randn(8, 64).half())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_export_converts_only_where_faster_and_keeps_outputs():
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("needs sparse tensor cores (compute capability >= 8.0)")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 64)).cuda().half()
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.mul_(nm_mask(layer.weight.float(), 2, 4).half())
    x = torch.randn(256, 4096, device="cuda", dtype=torch.float16)
    expected = model(x)
    report = to_semi_structured(model, x, min_speedup=0.0)     # convert every eligible layer
    assert report.set_index("name").loc["0", "converted"]
    assert "not a multiple" in report.set_index("name").loc["2", "reason"]
    assert isinstance(model[0].weight, torch.sparse.SparseSemiStructuredTensor)
    torch.testing.assert_close(model(x), expected, rtol=1e-2, atol=1e-2)
    strict = to_semi_structured(model, x, min_speedup=1e9)
    assert strict.set_index("name").loc["0", "reason"] == "already semi-structured sparse"
