"""Filter dropping in front of BatchNorm: the example schedule's gradients and when BN statistics need recalibrating.

A filter dropped by zeroing its weights gives its BatchNorm channel a batch variance of 0; BatchNorm's backward
pass scales that channel's gradient by 1/sqrt(eps) = 316, so without ``mask_gradients`` the dropped filter gets
a gradient hundreds of times a kept filter's. With the BatchNorm running statistics gathered under the drops,
this kept validation top-1 of examples/drop_filter/resnet20_bernoulli_drop_filter.yaml at 10-66% while filters
were dropped.
"""
import os

import pytest
import torch

import distiller
from distiller.models import create_model
from distiller.regularization import drops_only_in_training

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BERNOULLI = os.path.join(ROOT, "examples", "drop_filter", "resnet20_bernoulli_drop_filter.yaml")
DROP_FILTER = os.path.join(ROOT, "examples", "drop_filter", "resnet20_drop_filter.yaml")


@pytest.fixture
def resnet20():
    torch.manual_seed(0)
    return create_model(False, "cifar10", "resnet20_cifar", parallel=False)


def schedule(model, path):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return distiller.file_config(model, optimizer, path), optimizer


def test_example_bernoulli_schedule_gives_dropped_filters_no_gradient(resnet20):
    for module in resnet20.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # as after some training: with bias 0, ReLU blocks the gradient
            torch.nn.init.uniform_(module.bias, 0.1, 0.5)
    scheduler, optimizer = schedule(resnet20, BERNOULLI)
    torch.manual_seed(1)
    scheduler.on_epoch_begin(0, optimizer)
    scheduler.on_minibatch_begin(0, 0, 1, optimizer)
    loss = torch.nn.functional.cross_entropy(resnet20(torch.randn(8, 3, 32, 32)), torch.arange(8))
    optimizer.zero_grad()
    loss.backward()
    dropped_total = 0
    for name, param in resnet20.named_parameters():
        mask = scheduler.zeros_mask_dict[name].mask
        if mask is None:
            continue
        dropped = mask.flatten(1).sum(1) == 0
        dropped_total += int(dropped.sum())
        kept_grads = param.grad[~dropped].flatten(1).norm(dim=1)
        assert torch.count_nonzero(param.grad[dropped]) == 0, name
        assert (kept_grads > 0).all(), name
    assert dropped_total > 0  # the 5% drop rate drops some of the 9 layers' 336 filters


def test_dropping_filters_in_front_of_batchnorm_amplifies_their_gradient():
    """Why the schedule needs mask_gradients: the straight-through gradient of a zeroed filter is huge."""
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        conv.weight[0] = 0  # filter 0 dropped for this forward pass, as a forward-only mask does
    out = bn(conv(torch.randn(16, 3, 8, 8)))
    (out * torch.randn_like(out)).sum().backward()  # a loss whose gradient varies over the positions
    norms = conv.weight.grad.flatten(1).norm(dim=1)
    assert norms[0] > 50 * norms[1:].max()


@pytest.mark.parametrize("path, drop_epochs", [(BERNOULLI, range(16)), (DROP_FILTER, range(16))])
def test_drops_only_in_training_follows_the_schedules_drop_epochs(resnet20, path, drop_epochs):
    scheduler, _ = schedule(resnet20, path)
    assert [e for e in range(20) if drops_only_in_training(scheduler, e)] == list(drop_epochs)


@pytest.mark.parametrize("args", [{"mask_on_forward_only": True}, {"use_double_copies": True},
                                  {"discard_masks_at_minibatch_end": True}, {}])
def test_masks_kept_for_evaluation_need_no_batchnorm_recalibration(resnet20, args):
    """Soft masks that stay (soft filter pruning) are applied in evaluation too; discarded hard masks zero
    the weights themselves: in both cases evaluation runs the network training ran."""
    config = {"version": 1,
              "pruners": {"p": {"class": "BernoulliFilterPruner", "desired_sparsity": 0.1, "group_type": "Filters",
                                "weights": ["layer1.0.conv1.weight"]}},
              "policies": [{"pruner": {"instance_name": "p", "args": dict(args, mini_batch_pruning_frequency=1)},
                            "starting_epoch": 0, "ending_epoch": 2, "frequency": 1}]}
    optimizer = torch.optim.SGD(resnet20.parameters(), lr=0.1)
    scheduler = distiller.config.dict_config(resnet20, optimizer, config)
    assert not any(drops_only_in_training(scheduler, e) for e in range(3))
