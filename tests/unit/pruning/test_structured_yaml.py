"""Structure pruners and regularizers from YAML: Distiller's argument names, and ScheduleErrors for bad ones."""
import pytest
import torch

import distiller
import distiller.regularization  # noqa: F401 - registers the regularizers
from distiller.errors import ScheduleError
from distiller.testing import TinyResidualNet


def schedule(pruner_args, section="pruners", policy="pruner", when=None):
    when = when or {"epochs": [0]}
    return {"version": 1, section: {"p": pruner_args}, "policies": [dict({policy: {"instance_name": "p"}}, **when)]}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyResidualNet(width=8)


def masks_after_epoch0(model, sched):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = distiller.config.dict_config(model, optimizer, sched)
    scheduler.on_epoch_begin(0, optimizer)
    return scheduler.zeros_mask_dict


def test_blocks_leader_and_rounding_from_yaml(model):
    masks = masks_after_epoch0(model, schedule({
        "class": "L1RankedStructureParameterPruner", "group_type": "Blocks", "desired_sparsity": 0.3,
        "weights": ["block_conv1.weight"], "kwargs": {"block_shape": [1, 4, 3, 3]}, "rounding_fn": "ceil"}))
    blocks = masks["block_conv1.weight"].mask.reshape(8, 2, 36).amax(dim=2)
    assert int((blocks == 0).sum()) == 5              # ceil(0.3 * 16 blocks)
    masks = masks_after_epoch0(model, schedule({
        "class": "L2RankedStructureParameterPruner_AGP", "initial_sparsity": 0.25, "final_sparsity": 0.5,
        "group_type": "Filters", "group_dependency": "Leader",
        "weights": ["conv1.weight", "block_conv2.weight"]}, when={"starting_epoch": 0, "ending_epoch": 4}))
    first, second = (masks[n].mask.flatten(1).amax(dim=1) for n in ("conv1.weight", "block_conv2.weight"))
    assert torch.equal(first, second) and int((first == 0).sum()) == 2


@pytest.mark.parametrize("args, message", [
    ({"class": "L1RankedStructureParameterPruner", "group_type": "Filter", "desired_sparsity": 0.5,
      "weights": ["conv1.weight"]}, "unknown group_type 'Filter'"),
    ({"class": "L1RankedStructureParameterPruner", "group_type": "Filters", "desired_sparsity": 0.5,
      "weights": ["conv9.weight"]}, "'conv9.weight' matches no parameter"),
    ({"class": "L1RankedStructureParameterPruner_AGP", "initial_sparsity": 0.1, "final_sparsity": 0.5,
      "group_type": "Filters", "weights": ["conv1.weight"], "group_sise": 2}, "has no argument 'group_sise'"),
    ({"class": "FMReconstructionChannelPruner", "group_type": "Channels", "desired_sparsity": 0.5,
      "weights": ["fc.bias"]},
     "'fc.bias' is not the weight of a Linear or Conv2d layer"),
])
def test_bad_pruner_yaml_is_a_schedule_error(model, args, message):
    with pytest.raises(ScheduleError, match=message) as error:
        masks_after_epoch0(model, schedule(args))
    assert "pruners" in str(error.value)


def test_bad_regularizer_yaml_is_a_schedule_error(model):
    sched = schedule({"class": "GroupLassoRegularizer", "reg_regims": {"conv1.weight": [0.1, "Kernels"]}},
                     section="regularizers", policy="regularizer")
    with pytest.raises(ScheduleError, match=r"reg_regims\['conv1.weight'\]\[1\]' expects '2D' or .* got 'Kernels'"):
        masks_after_epoch0(model, sched)
