"""Regularizers: losses against closed forms, gradients, thresholding, DropFilter through the scheduler."""
import typing

import pytest
import torch
from torch import nn

import distiller
from distiller.errors import ArgumentError, ScheduleError
from distiller.registry import REGULARIZERS
from distiller.regularization import (GROUP_TYPES, DropFilterRegularizer, GroupLassoRegularizer, GroupLassoType,
                                      GroupVarianceRegularizer, L1Regularizer)
from distiller.scheduler import create_model_masks_dict
from distiller.testing import TinyCNN, train_with_scheduler


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyCNN(width=4)


def loss_of(regularizer, model, name):
    param = dict(model.named_parameters())[name]
    return regularizer.loss(param, name, torch.zeros(()), create_model_masks_dict(model))


def test_l1_loss_gradient_and_threshold(model):
    reg = L1Regularizer("l1", model, {"conv1.weight": 0.01, r"fc\..*": "1e-3"}, threshold_criteria="Mean_Abs")
    w = model.conv1.weight
    loss = loss_of(reg, model, "conv1.weight")
    assert torch.allclose(loss, 0.01 * w.abs().sum())
    loss.backward()
    assert torch.allclose(w.grad, 0.01 * torch.sign(w))
    assert torch.allclose(loss_of(reg, model, "fc.weight"), 1e-3 * model.fc.weight.abs().sum())
    masks = create_model_masks_dict(model)
    reg.threshold(w, "conv1.weight", masks)
    assert torch.equal(masks["conv1.weight"].mask, (w.abs() > 0.01).float())


def closed_form_group_norms(w, structure):
    """Group L2 norms written out with loops, independently of distiller.norms."""
    if structure == "Filters":
        return [w[o].pow(2).sum().sqrt() for o in range(w.shape[0])]
    if structure == "Channels":
        return [w[:, c].pow(2).sum().sqrt() for c in range(w.shape[1])]
    if structure == "2D":
        return [w[o, c].pow(2).sum().sqrt() for o in range(w.shape[0]) for c in range(w.shape[1])]
    if structure == "Rows":
        return [w.reshape(w.shape[0], -1)[r].pow(2).sum().sqrt() for r in range(w.shape[0])]
    if structure == "Cols":
        flat = w.reshape(w.shape[0], -1)
        return [flat[:, c].pow(2).sum().sqrt() for c in range(flat.shape[1])]
    return [w.pow(2).sum().sqrt()]


@pytest.mark.parametrize("group_type, parts", [
    ("Filters", ["Filters"]), ("3D", ["Filters"]), ("Channels", ["Channels"]), ("2D", ["2D"]), ("Rows", ["Rows"]),
    ("Cols", ["Cols"]), ("Rows+Cols", ["Rows", "Cols"]), ("4D", ["4D"]), ("Channels+4D", ["Channels", "4D"])])
def test_group_lasso_is_strength_times_sum_of_group_norms(model, group_type, parts):
    reg = GroupLassoRegularizer("gl", model, {"conv2.weight": [0.5, group_type]})
    w = model.conv2.weight
    expected = sum(0.5 * sum(closed_form_group_norms(w.detach(), part)) for part in parts)
    loss = loss_of(reg, model, "conv2.weight")
    assert torch.allclose(loss, torch.as_tensor(expected), rtol=1e-5)
    loss.backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_group_lasso_gradient_is_finite_on_pruned_groups(model):
    with torch.no_grad():
        model.conv1.weight[0] = 0.0
    reg = GroupLassoRegularizer("gl", model, {"conv1.weight": [0.1, "Filters"]})
    loss_of(reg, model, "conv1.weight").backward()
    assert torch.isfinite(model.conv1.weight.grad).all()
    assert model.conv1.weight.grad[0].abs().sum() == 0


def test_group_lasso_thresholding_zeroes_small_groups(model):
    with torch.no_grad():
        model.conv2.weight[:, 1] = 1e-4          # a near-dead input channel
        model.conv2.weight[3] = 1e-4             # a near-dead filter
    reg = GroupLassoRegularizer("gl", model, {"conv2.weight": [0.01, "Channels"], "fc.weight": [0.01, "Rows+Cols"]},
                                threshold_criteria="Max")
    masks = create_model_masks_dict(model)
    reg.threshold(model.conv2.weight, "conv2.weight", masks)
    mask = masks["conv2.weight"].mask
    assert mask[:, 1].sum() == 0 and mask[:, [0, 2, 3]].all()
    with torch.no_grad():
        model.fc.weight[2] = 0.0
        model.fc.weight[:, 5] = 0.0
    reg.threshold(model.fc.weight, "fc.weight", masks)
    fc_mask = masks["fc.weight"].mask
    assert fc_mask[2].sum() == 0 and fc_mask[:, 5].sum() == 0 and fc_mask.sum() == (10 - 1) * (8 - 1)


def test_group_variance_closed_form_scale_invariance_and_direction(model):
    reg = GroupVarianceRegularizer("gv", model, {"conv1.weight": [2.0, "Filters"]})
    w = model.conv1.weight
    norms = torch.stack(closed_form_group_norms(w.detach(), "Filters"))
    expected = 2.0 / (1.0 + norms.var() / norms.mean() ** 2)
    assert torch.allclose(loss_of(reg, model, "conv1.weight"), expected)
    with torch.no_grad():
        w.mul_(3.0)
    assert torch.allclose(loss_of(reg, model, "conv1.weight"), expected, rtol=1e-4)
    with torch.no_grad():
        w[0].mul_(10.0)                          # spread the norms: the term falls
    assert loss_of(reg, model, "conv1.weight") < expected
    w.grad = None
    loss_of(reg, model, "conv1.weight").backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


BAD_ARGUMENTS = [  # class, arguments, argument named, place inside it, expected type, value given
    ("GroupLassoRegularizer", {"reg_regims": {"conv1.weight": 0.1}}, "reg_regims", ("conv1.weight",),
     "a list [number >= 0, '2D' or 'Rows'", 0.1),
    ("GroupLassoRegularizer", {"reg_regims": {"conv1.weight": [0.1]}}, "reg_regims", ("conv1.weight",),
     "e.g. [0.0002, Filters]", [0.1]),
    ("GroupLassoRegularizer", {"reg_regims": {"conv1.weight": [0.1, "Filter"]}}, "reg_regims", ("conv1.weight", 1),
     "'2D' or 'Rows' or 'Cols' or 'Rows+Cols' or 'Channels' or 'Filters' or '3D' or '4D' or 'Channels+4D'", "Filter"),
    ("GroupVarianceRegularizer", {"reg_regims": {"conv1.weight": [-0.1, "Filters"]}}, "reg_regims",
     ("conv1.weight", 0), "a number >= 0", -0.1),
    ("GroupLassoRegularizer", {"reg_regims": {"conv1.weight": [0.1, "Filters"]}, "threshold_criteria": "L1"},
     "threshold_criteria", (), "'Mean_Abs' or 'Max' or None", "L1"),  # typing caches equal Literals: order may vary
    ("L1Regularizer", {"reg_regims": {"conv1.weight": "x"}}, "reg_regims", ("conv1.weight",), "a number >= 0", "x"),
    ("L1Regularizer", {"reg_regims": {"conv1.weight": -1}}, "reg_regims", ("conv1.weight",), "a number >= 0", -1),
    ("L1Regularizer", {"reg_regims": {}}, "reg_regims", (), "a mapping of string to number >= 0", {}),
    ("L1Regularizer", {"reg_regims": ["conv1.weight"]}, "reg_regims", (), "a mapping of string to number >= 0",
     ["conv1.weight"]),
    ("DropFilterRegularizer", {"reg_regims": {"conv1.weight": 1.0}}, "reg_regims", ("conv1.weight",),
     "a number in [0, 1)", 1.0),
]


@pytest.mark.parametrize("class_name, args, argument, location, expected, given", BAD_ARGUMENTS)
def test_bad_arguments_name_the_argument_entry_expected_type_and_value(model, class_name, args, argument, location,
                                                                       expected, given):
    with pytest.raises(ArgumentError) as info:
        REGULARIZERS.get(class_name)("reg", model, **args)
    err = info.value
    assert (err.argument, err.location) == (argument, location)
    where = "".join(f"[{part!r}]" for part in location)
    assert str(err).startswith(f"{class_name}: argument '{argument}{where}' expects ")
    assert f"got {given!r}" in str(err)
    assert expected in str(err).replace("'Max' or 'Mean_Abs'", "'Mean_Abs' or 'Max'")


@pytest.mark.parametrize("class_name, args", [(c, a) for c, a, *_ in BAD_ARGUMENTS])
def test_python_and_yaml_callers_get_the_same_error(model, class_name, args):
    with pytest.raises(ArgumentError) as python:
        REGULARIZERS.get(class_name)("reg", model, **args)
    schedule = {"regularizers": {"reg": {"class": class_name, **args}},
                "policies": [{"regularizer": {"instance_name": "reg"}, "starting_epoch": 0, "ending_epoch": 2}]}
    with pytest.raises(ScheduleError) as yaml:
        distiller.config.dict_config(model, torch.optim.SGD(model.parameters(), lr=0.1), schedule)
    err = python.value
    assert str(err) in str(yaml.value)
    inside = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in err.location)
    assert yaml.value.path == f"regularizers.reg.{err.argument}{inside}"


def test_drop_filter_refuses_thresholding(model):
    with pytest.raises(ArgumentError, match="remove threshold_criteria") as info:
        DropFilterRegularizer("df", model, {"conv1.weight": 0.1}, threshold_criteria="Max")
    assert info.value.argument == "threshold_criteria"


def test_group_types_are_the_annotated_ones():
    assert set(GROUP_TYPES) == set(typing.get_args(GroupLassoType))


def test_yaml_values_are_normalised(model):
    reg = GroupLassoRegularizer("gl", model, {"conv1.weight": ["2e-4", "Filters"]})
    assert reg.reg_regims == {"conv1.weight": (0.0002, "Filters")}


def test_drop_filter_drops_whole_filters_for_one_training_forward(model):
    reg = DropFilterRegularizer("df", model, {"conv1.weight": 0.5})
    outputs = []
    model.conv1.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        clean = nn.functional.conv2d(x, model.conv1.weight, padding=1)
    for seed in range(8):
        torch.manual_seed(seed)
        reg.on_minibatch_begin(model, None)
        model.train()
        model(x)
        dropped = outputs[-1].flatten(2).abs().sum(dim=(0, 2)) == 0
        assert int(dropped.sum()) < 4                              # at least one filter survives
        kept = ~dropped
        assert torch.allclose(outputs[-1][:, kept], 2.0 * clean[:, kept], atol=1e-5)  # scaled by 1 / (1 - p)
        model.eval()
        model(x)
        assert torch.allclose(outputs[-1], clean, atol=1e-6)      # evaluation is untouched
        reg.loss(model.conv1.weight, "conv1.weight", torch.zeros(()), None)
        model.train()
        model(x)
        assert torch.allclose(outputs[-1], clean, atol=1e-6)      # retired after the mini-batch
        if dropped.any():
            break
    assert dropped.any()
    reg.remove_hooks()


def test_drop_filter_acts_only_in_the_policys_epochs(model, batches):
    sched = {"version": 1,
             "regularizers": {"df": {"class": "DropFilterRegularizer", "reg_regims": {"conv2.weight": 0.5}}},
             "policies": [{"regularizer": {"instance_name": "df"}, "epochs": [1]}]}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = distiller.config.dict_config(model, optimizer, sched)
    zero_channels = []

    def record(module, inputs, output):
        if module.training:
            zero_channels.append(int((output.flatten(2).abs().sum(dim=(0, 2)) == 0).sum()))
    model.conv2.register_forward_hook(record)
    torch.manual_seed(0)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=3)
    per_epoch = [zero_channels[i:i + len(batches)] for i in range(0, len(zero_channels), len(batches))]
    assert sum(per_epoch[0]) == 0 and sum(per_epoch[2]) == 0
    assert all(count > 0 for count in per_epoch[1])


def test_schedule_file_error_points_at_the_bad_entry_line(model, tmp_path):
    path = tmp_path / "schedule.yaml"
    path.write_text("regularizers:\n"
                    "  gl:\n"
                    "    class: GroupLassoRegularizer\n"
                    "    reg_regims:\n"
                    "      conv1.weight: [0.0002, Filters]\n"
                    "      conv2.weight: [0.0002, Channel]\n"
                    "policies:\n"
                    "  - regularizer: {instance_name: gl}\n"
                    "    starting_epoch: 0\n"
                    "    ending_epoch: 2\n")
    with pytest.raises(ScheduleError) as info:
        distiller.file_config(model, torch.optim.SGD(model.parameters(), lr=0.1), str(path))
    err = info.value
    assert (err.path, err.line) == ("regularizers.gl.reg_regims.conv2.weight[1]", 6)
    assert "expects '2D' or 'Rows'" in str(err) and "got 'Channel'" in str(err)


def test_regim_looks_up_exact_names_then_regexes_and_refuses_others(model):
    reg = L1Regularizer("l1", model, {r"conv\d\.weight": 0.2, "conv1.weight": 0.1})
    assert (reg.regim("conv1.weight"), reg.regim("conv2.weight")) == (0.1, 0.2)
    with pytest.raises(KeyError, match="no entry of reg_regims matches parameter 'fc.weight'"):
        reg.regim("fc.weight")
