"""Early exits (Distiller's ``resnet*_cifar_earlyexit``): the exit classifies the activation it branches
from, the forward pass returns every exit's logits then the final ones, nothing outlives the step, and
training reaches the exit's weights."""
import torch
import torch.nn as nn

from distiller.models import create_model
from distiller.models.early_exit import BranchPoint, attach_exit, pop_exit_outputs


def test_branch_point_returns_the_module_output_and_keeps_the_exit_output():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    branch = nn.Linear(3, 5)
    point = attach_exit(model, "1", branch)
    assert model[1] is point and isinstance(point.branched_module, nn.ReLU) and point.branch_net is branch
    x = torch.randn(6, 4)
    hidden = torch.relu(model[0](x))
    torch.testing.assert_close(model(x), model[2](hidden))
    [exit_output] = pop_exit_outputs(model)
    torch.testing.assert_close(exit_output, branch(hidden))
    assert point.output is None and pop_exit_outputs(model) == [None]


def test_resnet_cifar_earlyexit_returns_exit_and_final_logits_and_trains_the_exit():
    torch.manual_seed(0)
    model = create_model(False, "cifar10", "resnet20_cifar_earlyexit", parallel=False, device_ids=-1)
    exit_point = model.get_submodule("layer1.2.relu2")
    assert isinstance(exit_point, BranchPoint)
    exit_logits, final_logits = model(torch.randn(3, 3, 32, 32))
    assert exit_logits.shape == final_logits.shape == (3, 10) and exit_point.output is None
    target = torch.tensor([1, 2, 3])
    loss = sum(nn.functional.cross_entropy(logits, target) for logits in (exit_logits, final_logits))
    loss.backward()
    assert exit_point.branch_net[2].weight.grad.abs().sum() > 0
    assert model.fc.weight.grad.abs().sum() > 0
