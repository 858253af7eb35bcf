"""Distiller's variants of torchvision models under torchvision's names: the ImageNet ResNets with one ReLU
module per use and an ``EltwiseAdd`` named ``add``, the patched MobileNet v2, GoogLeNet and Inception v3.
Each has torchvision's parameters and computes what torchvision's model computes with the same weights;
torchvision's own models stay reachable as ``torchvision.<name>``."""
import pytest
import torch
import torch.nn as nn
import torchvision

from distiller.models import create_model, list_models
from distiller.models.imagenet import RESNET_NAMES
from distiller.modules import EltwiseAdd, Mean

BIG = {"resnet101", "resnet152", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"}


def build(arch: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(False, "imagenet", arch, parallel=False, device_ids=-1)


def torchvision_model(name: str, **kwargs) -> nn.Module:
    return torchvision.models.get_model(name, weights=None, **kwargs)


def assert_same_function(ours: nn.Module, theirs: nn.Module, size: int) -> None:
    """Same parameter names, shapes and order; with ``theirs``'s weights, ``ours`` computes the same."""
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))


def blocks(model: nn.Module) -> list:
    return [m for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for m in layer]


@pytest.mark.parametrize("arch", [pytest.param(a, marks=[pytest.mark.slow] if a in BIG else []) for a in RESNET_NAMES])
def test_distiller_resnet_equals_torchvision_resnet(arch):
    model = build(arch)
    assert_same_function(model, torchvision_model(arch), 64)


@pytest.mark.parametrize("arch, relus", [("resnet18", 2), ("resnet50", 3), ("resnext50_32x4d", 3)])
def test_distiller_resnet_blocks_have_one_relu_per_use_and_an_add_module(arch, relus):
    model = build(arch)
    for block in blocks(model):
        children = dict(block.named_children())
        assert "relu" not in children and isinstance(children["add"], EltwiseAdd)
        assert [n for n, m in children.items() if isinstance(m, nn.ReLU)] == [f"relu{i}" for i in range(1, relus + 1)]
        # listed in execution order: the sum, then the last ReLU
        assert list(children)[-2:] == ["add", f"relu{relus}"]
    calls = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.ReLU, EltwiseAdd)):
            module.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 64, 64))
    used = {name for name, m in model.named_modules() if isinstance(m, (nn.ReLU, EltwiseAdd))}
    assert calls == dict.fromkeys(used, 1)


def test_plain_torchvision_models_are_reachable_by_prefix():
    assert {f"torchvision.{name}" for name in torchvision.models.list_models(module=torchvision.models)} \
        <= set(list_models("imagenet"))
    plain = build("torchvision.resnet18")
    assert type(plain.layer1[0]) is torchvision.models.resnet.BasicBlock
    assert "layer1.0.relu" in dict(plain.named_modules())
    assert type(build("resnet18").layer1[0]).__name__ == "DistillerBasicBlock"
    # torchvision models Distiller did not replace are the same under both names
    assert type(build("squeezenet1_1")) is type(build("torchvision.squeezenet1_1"))


def test_mobilenet_v2_sums_and_pools_through_modules_and_equals_torchvision():
    model = build("mobilenet_v2")
    adds = [name for name, m in model.named_modules() if isinstance(m, EltwiseAdd)]
    assert adds == [f"features.{i}.residual_eltwiseadd" for i in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16)]
    assert [type(m) for m in model.mean32] == [Mean, Mean]
    calls = []
    model.mean32.register_forward_hook(lambda *args: calls.append(1))
    assert_same_function(model, torchvision_model("mobilenet_v2"), 64)
    assert calls == [1]


@pytest.mark.slow
@pytest.mark.parametrize("arch, aux, size", [("googlenet", ("aux1", "aux2"), 64), ("inception_v3", ("AuxLogits",), 80)],
                         ids=["googlenet", "inception_v3"])
def test_auxiliary_heads_are_built_but_not_run(arch, aux, size):
    model = build(arch)
    assert_same_function(model, torchvision_model(arch, aux_logits=True, init_weights=True), size)
    ran = []
    for name in aux:
        getattr(model, name).register_forward_hook(lambda *args: ran.append(1))
    output = model.train()(torch.randn(2, 3, size, size))
    assert isinstance(output, torch.Tensor) and output.shape == (2, 1000)
    assert not ran


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_pretrained_variants_load_torchvision_weights(monkeypatch, arch):
    weights = torchvision_model(arch).state_dict()
    requested = []

    class Default:
        @staticmethod
        def get_state_dict(progress=True):
            return weights

    monkeypatch.setattr(torchvision.models, "get_model_weights",
                        lambda name: requested.append(name) or type("Weights", (), {"DEFAULT": Default}))
    model = create_model(True, "imagenet", arch, parallel=False, device_ids=-1)
    assert requested == [arch]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
