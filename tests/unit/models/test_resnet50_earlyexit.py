"""``resnet50_earlyexit``: Distiller's ResNet-50 layout with two exits that classify the first and second
stages' outputs; the forward pass returns both exits' logits, then the final ones. (Slow: building a
ResNet-50 takes seconds on a busy CPU; it is built once.)"""
import pytest
import torch
import torch.nn as nn

from distiller.models import create_model
from distiller.models.early_exit import BranchPoint
from distiller.models.imagenet.resnet_earlyexit import EXITS


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(False, "imagenet", "resnet50_earlyexit", parallel=False, device_ids=-1)


def test_resnet50_earlyexit_returns_each_exit_then_the_final_logits_on_a_small_input(model):
    plain = create_model(False, "imagenet", "resnet50", parallel=False, device_ids=-1)
    trunk = {name: tuple(p.shape) for name, p in model.named_parameters() if ".branch_net." not in name}
    assert trunk == {name.replace(".relu3.", ".relu3.branched_module."): tuple(p.shape)
                     for name, p in plain.named_parameters()}
    points = [model.get_submodule(name) for name, _, _ in EXITS]
    assert all(isinstance(point, BranchPoint) for point in points)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outputs = model.eval()(x)
    assert len(outputs) == 3 and all(o.shape == (2, 1000) for o in outputs)
    assert all(point.output is None for point in points)
    stage1 = model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))
    torch.testing.assert_close(outputs[0], points[0].branch_net(stage1))
    torch.testing.assert_close(outputs[2], model.fc(torch.flatten(model.avgpool(model.layer4(model.layer3(
        model.layer2(stage1)))), 1)))


def test_resnet50_earlyexit_trains_its_exits(model):
    outputs = model.train()(torch.randn(2, 3, 32, 32))
    sum(nn.functional.cross_entropy(o, torch.tensor([1, 7])) for o in outputs).backward()
    for name, _, _ in EXITS:
        assert model.get_submodule(name).branch_net[-1].weight.grad.abs().sum() > 0
