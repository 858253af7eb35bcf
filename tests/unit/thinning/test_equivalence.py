"""Equivalence suite: zero ~40% of the filters (or channels) through masks, thin, and the thinned model
computes what the masked model computed, is smaller, and keeps training with its optimizer state. AGP filter
pruning on the dependency groups (``group_dependency: Graph``) zeros only removable channels, with their
BatchNorms: thinning removes all of them and keeps the outputs, whatever the BatchNorm shifts."""
import pytest
import torch
import torchvision
from torch import nn

from distiller import CompressionScheduler, PruningPolicy
from distiller.models import create_model
from distiller.pruning import L1RankedStructureParameterPruner_AGP
from distiller.summaries import model_macs, model_params
from distiller.thinning import contract_model, remove_channels, remove_filters

THIN = {"Filters": remove_filters, "Channels": remove_channels, "Both": contract_model}
OPTIMIZERS = {"sgd": lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9),
              "adam": lambda params: torch.optim.Adam(params, lr=1e-3)}


def _zoo(arch):
    return lambda: create_model(False, "cifar10", arch, parallel=False, device_ids=-1)


def _torchvision(name, **kwargs):
    return lambda: getattr(torchvision.models, name)(**kwargs)


slow = pytest.mark.slow
MODELS = [
    pytest.param("resnet20_cifar", _zoo("resnet20_cifar"), 32, id="resnet20_cifar"),
    pytest.param("resnet56_cifar", _zoo("resnet56_cifar"), 32, id="resnet56_cifar", marks=slow),
    pytest.param("preact_resnet20_cifar", _zoo("preact_resnet20_cifar"), 32, id="preact_resnet20_cifar"),
    pytest.param("vgg16_cifar", _zoo("vgg16_cifar"), 32, id="vgg16_cifar", marks=slow),
    pytest.param("simplenet_cifar", _zoo("simplenet_cifar"), 32, id="simplenet_cifar"),
    pytest.param("resnet18", _torchvision("resnet18"), 64, id="resnet18", marks=slow),
    pytest.param("resnet50", _torchvision("resnet50"), 64, id="resnet50", marks=slow),
    pytest.param("mobilenet_v2", _torchvision("mobilenet_v2"), 64, id="mobilenet_v2", marks=slow),
    pytest.param("densenet121", _torchvision("densenet121"), 64, id="densenet121", marks=slow),
    pytest.param("googlenet", _torchvision("googlenet", aux_logits=False, init_weights=True), 64, id="googlenet",
                 marks=slow),
    pytest.param("shufflenet_v2_x1_0", _torchvision("shufflenet_v2_x1_0"), 64, id="shufflenet_v2_x1_0",
                 marks=slow),
    pytest.param("efficientnet_b0", _torchvision("efficientnet_b0"), 64, id="efficientnet_b0", marks=slow),
    pytest.param("regnet_y_400mf", _torchvision("regnet_y_400mf"), 64, id="regnet_y_400mf", marks=slow),
]


def _check_equivalence(kit, build, size, structure, optimizer_name):
    torch.manual_seed(0)
    model = build()
    inputs = torch.randn(2, 3, size, size, generator=kit.generator)
    optimizer = OPTIMIZERS[optimizer_name](model.parameters())
    kit.train_step(model, optimizer, inputs)                      # optimizer state and gradients exist
    kit.randomize_batchnorm(model, kit.generator)
    masks = kit.prune_randomly(model, 0.4, "Filters" if structure == "Both" else structure, kit.generator)
    with torch.no_grad():
        expected = model(inputs)
    params, macs = model_params(model), model_macs(model, inputs)

    recipe = THIN[structure](model, masks, optimizer=optimizer, dummy_input=inputs[:1])

    with torch.no_grad():
        actual = model(inputs)
    assert recipe, "nothing was thinned"
    assert (actual - expected).abs().max().item() <= 1e-4
    assert model_params(model) < params and model_macs(model, inputs) < macs
    for name, param in model.named_parameters():
        assert param.grad is None or param.grad.shape == param.shape, name
        assert masks[name].mask is None or masks[name].mask.shape == param.shape, name
        for key, state in optimizer.state[param].items():
            assert not torch.is_tensor(state) or state.dim() == 0 or state.shape == param.shape, (name, key)
    kit.train_step(model, optimizer, inputs)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("name,build,size", MODELS)
def test_thinning_zero_filters_keeps_outputs(kit, name, build, size):
    _check_equivalence(kit, build, size, "Filters", "sgd")


@pytest.mark.parametrize("name,build,size", [p for p in MODELS if p.id in (
    "resnet20_cifar", "preact_resnet20_cifar", "simplenet_cifar", "mobilenet_v2", "efficientnet_b0",
    "shufflenet_v2_x1_0", "densenet121")])
def test_thinning_unused_channels_keeps_outputs(kit, name, build, size):
    _check_equivalence(kit, build, size, "Channels", "adam")


@pytest.mark.parametrize("structure,optimizer_name", [("Filters", "adam"), ("Channels", "sgd"), ("Both", "sgd")])
def test_functional_model_with_cat_split_shuffle_and_gates(kit, structure, optimizer_name):
    _check_equivalence(kit, kit.BranchyNet, 16, structure, optimizer_name)


@pytest.mark.parametrize("name,build,size", MODELS)
def test_agp_filter_pruning_on_dependency_groups_thins_away_exactly(kit, name, build, size):
    torch.manual_seed(0)
    model = build().eval()
    kit.randomize_batchnorm(model, kit.generator, shift=True)
    inputs = torch.randn(2, 3, size, size, generator=kit.generator)
    convs = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    pruner = L1RankedStructureParameterPruner_AGP("agp", 0.1, 0.4, "Filters", convs, group_dependency="Graph",
                                                  dummy_input=inputs[:1])
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(PruningPolicy(pruner, None), starting_epoch=0, ending_epoch=3)
    for epoch in range(3):
        scheduler.on_epoch_begin(epoch)
    masks = scheduler.zeros_mask_dict
    zeroed = sum(int((masks[n].mask.flatten(1) == 0).all(dim=1).sum()) for n in convs)
    with torch.no_grad():
        expected = model(inputs)
    params = model_params(model)

    remove_filters(model, masks, dummy_input=inputs[:1])

    with torch.no_grad():
        assert (model(inputs) - expected).abs().max().item() <= 1e-4
    assert zeroed > 0 and model_params(model) < params
    left = [n for n, masker in masks.items() if masker.mask is not None and not bool(masker.mask.all())]
    assert not left, f"masked channels thinning did not remove: {left[:3]}"


@pytest.mark.cuda
def test_thinning_on_the_gpu_follows_the_model_device(kit):
    model = kit.BranchyNet().cuda()
    inputs = torch.randn(2, 3, 16, 16, device="cuda")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    kit.train_step(model, optimizer, inputs)
    kit.randomize_batchnorm(model, kit.generator)
    masks = kit.prune_randomly(model, 0.4, "Filters", kit.generator)
    with torch.no_grad():
        expected = model(inputs)
    assert remove_filters(model, masks, optimizer=optimizer, dummy_input=inputs[:1])
    with torch.no_grad():
        assert (model(inputs) - expected).abs().max().item() <= 1e-4
    kit.train_step(model, optimizer, inputs)
