"""Regularizers: losses against closed forms, gradients, thresholding, DropFilter through the scheduler."""
import pytest
import torch
from torch import nn

import distiller
from distiller.regularization import (DropFilterRegularizer, GroupLassoRegularizer, GroupVarianceRegularizer,
                                      L1Regularizer)
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


def test_regularizers_reject_bad_arguments(model):
    with pytest.raises(ValueError, match=r"gl: reg_regims\['conv1.weight'\]=0.1 must be \[value, group_type\]"):
        GroupLassoRegularizer("gl", model, {"conv1.weight": 0.1})
    with pytest.raises(ValueError, match="unknown group type 'Filter'"):
        GroupLassoRegularizer("gl", model, {"conv1.weight": [0.1, "Filter"]})
    with pytest.raises(ValueError, match="threshold_criteria='L1' must be one of"):
        L1Regularizer("l1", model, {"conv1.weight": 0.1}, threshold_criteria="L1")
    with pytest.raises(ValueError, match="drop probability must be below 1"):
        DropFilterRegularizer("df", model, {"conv1.weight": 1.0})
    with pytest.raises(ValueError, match="remove threshold_criteria"):
        DropFilterRegularizer("df", model, {"conv1.weight": 0.1}, threshold_criteria="Max")


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
