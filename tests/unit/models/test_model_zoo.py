"""The model zoo: every CIFAR-10/digits and MNIST architecture builds, classifies and traces with torch.fx;
ImageNet builders by name; registry helpers; clear errors for bad names, mismatches and pretrained weights."""
import urllib.error

import pytest
import torch
import torch.nn as nn
import torchvision

import distiller.models as models
from distiller.errors import ArgumentError, InputFileError
from distiller.models import create, registry

CIFAR_ARCHS = [a for a in models.list_models("cifar10") if not a.startswith("resnet1202_cifar")]
REQUIRED = (
    ["simplenet_cifar", "plain20_cifar", "plain20_cifar_nobn", "simplenet_mnist", "simplenet_v2_mnist",
     "alexnet_bn", "mobilenet", "mobilenet_025", "mobilenet_050", "mobilenet_075"]
    + [f"resnet{d}_cifar" for d in (20, 32, 44, 56, 110, 1202)]
    + [f"preact_resnet{d}_cifar{s}" for d in (20, 32, 44, 56, 110) for s in ("", "_conv_ds")]
    + [f"vgg{d}{bn}_cifar" for d in (11, 13, 16, 19) for bn in ("", "_bn")]
    + [f"preact_resnet{d}" for d in (18, 34, 50, 101, 152)])


def count(model, kind, kernel_size=None):
    return sum(1 for m in model.modules() if isinstance(m, kind)
               and (kernel_size is None or m.kernel_size == kernel_size))


def test_all_model_names_sorted_and_complete():
    assert models.ALL_MODEL_NAMES == sorted(models.ALL_MODEL_NAMES)
    assert len(set(models.ALL_MODEL_NAMES)) == len(models.ALL_MODEL_NAMES)
    missing = set(REQUIRED) - set(models.ALL_MODEL_NAMES)
    assert not missing
    torchvision_names = torchvision.models.list_models(module=torchvision.models)
    assert set(torchvision_names) <= set(models.list_models("imagenet"))


@pytest.mark.parametrize("arch", CIFAR_ARCHS)
def test_cifar_model_classifies_and_traces(arch):
    torch.manual_seed(0)
    model = models.create_model(False, "digits", arch, device_ids=-1).eval()
    x = torch.randn(1, 3, 32, 32)
    logits = model(x)
    # early-exit models return the exits' logits and the final classifier's, in a list
    for output in logits if arch.endswith("_earlyexit") else [logits]:
        assert output.shape == (1, 10)
        assert torch.isfinite(output).all()
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), logits)


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_resnet_cifar_depth_is_6n_plus_2(depth):
    model = models.create_model(False, "cifar10", f"resnet{depth}_cifar", device_ids=-1)
    # weighted layers on the main path: 3x3 convolutions plus the classifier
    assert count(model, nn.Conv2d, (3, 3)) + count(model, nn.Linear) == depth
    assert count(model, nn.Conv2d, (1, 1)) == 2  # projection shortcuts into stages 2 and 3
    assert model.fc.in_features == 64


def test_resnet20_cifar_matches_the_paper():
    model = models.create_model(False, "cifar10", "resnet20_cifar", device_ids=-1)
    # He et al. 2016, Table 6: 0.27M parameters
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 0.27
    names = dict(model.named_parameters())
    assert names["layer1.0.conv1.weight"].shape == (16, 16, 3, 3)
    assert names["layer2.0.downsample.0.weight"].shape == (32, 16, 1, 1)
    assert names["layer3.2.conv2.weight"].shape == (64, 64, 3, 3)


def test_preact_option_a_shortcut_has_no_parameters():
    option_a = models.create_model(False, "cifar10", "preact_resnet20_cifar", device_ids=-1)
    option_b = models.create_model(False, "cifar10", "preact_resnet20_cifar_conv_ds", device_ids=-1)
    assert count(option_a, nn.Conv2d, (1, 1)) == 0
    assert count(option_b, nn.Conv2d, (1, 1)) == 2
    params_a = sum(p.numel() for p in option_a.parameters())
    params_b = sum(p.numel() for p in option_b.parameters())
    assert params_b - params_a == 16 * 32 + 32 * 64


def test_zero_pad_shortcut_averages_and_pads_channels():
    from distiller.models.layers import zero_pad_shortcut
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    out = zero_pad_shortcut(2, 6, 2)(x)
    assert out.shape == (1, 6, 2, 2)
    # Distiller's option-A shortcut: 2x2 average pooling, zero channels on both sides
    torch.testing.assert_close(out[:, 2:4], torch.nn.functional.avg_pool2d(x, 2))
    assert out[:, :2].abs().sum() == 0 and out[:, 4:].abs().sum() == 0


def test_plain20_has_no_shortcut_and_nobn_has_no_batchnorm():
    plain = models.create_model(False, "cifar10", "plain20_cifar", device_ids=-1)
    nobn = models.create_model(False, "cifar10", "plain20_cifar_nobn", device_ids=-1)
    assert count(plain, nn.Conv2d, (1, 1)) == 0 and count(plain, nn.BatchNorm2d) == 19
    assert count(nobn, nn.BatchNorm2d) == 0
    # as in Distiller, dropping batch-norm leaves the convolutions without biases
    assert all(m.bias is None for m in nobn.modules() if isinstance(m, nn.Conv2d))
    # parameter names are those of resnet20_cifar, so schedules carry over
    resnet = models.create_model(False, "cifar10", "resnet20_cifar", device_ids=-1)
    plain_names = {n for n, _ in plain.named_parameters()}
    assert plain_names == {n for n, _ in resnet.named_parameters() if "downsample" not in n}


@pytest.mark.parametrize("depth,batch_norm", [(11, False), (16, True), (19, True)])
def test_vgg_cifar_layer_counts(depth, batch_norm):
    arch = f"vgg{depth}{'_bn' if batch_norm else ''}_cifar"
    model = models.create_model(False, "cifar10", arch, device_ids=-1)
    # the CIFAR variant replaces the three fully connected layers of VGG by one classifier
    assert count(model, nn.Conv2d) == depth - 3 and count(model, nn.Linear) == 1
    assert count(model, nn.BatchNorm2d) == (depth - 3 if batch_norm else 0)
    assert count(model, nn.MaxPool2d) == 5


@pytest.mark.slow
def test_resnet1202_cifar_builds_and_runs():
    model = models.create_model(False, "cifar10", "resnet1202_cifar", device_ids=-1).eval()
    assert count(model, nn.Conv2d, (3, 3)) + count(model, nn.Linear) == 1202
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("arch", ["simplenet_mnist", "simplenet_v2_mnist"])
def test_mnist_models(arch):
    model = models.create_model(False, "mnist", arch, device_ids=-1).eval()
    x = torch.randn(3, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (3, 10)
    torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), logits)
    assert count(model, nn.MaxPool2d) == 2


def test_simplenet_v2_replaces_the_large_classifier_by_pooling():
    v1 = models.create_model(False, "mnist", "simplenet_mnist", device_ids=-1)
    v2 = models.create_model(False, "mnist", "simplenet_v2_mnist", device_ids=-1)
    assert sum(p.numel() for p in v1.parameters()) == 431_080
    assert sum(p.numel() for p in v2.parameters()) == 26_080
    assert count(v2, nn.AvgPool2d) == 1 and count(v2, nn.Linear) == 1


# Distiller's own ImageNet models pool over a fixed 7x7 window, as Distiller's did: they take 224x224 only
@pytest.mark.parametrize("arch, size", [("resnet18", 64), ("torchvision.resnet18", 64), ("mobilenet_v2", 64),
                                        ("mobilenet_v1_dropout", 64), ("squeezenet1_1", 64),
                                        ("mobilenet_025", 224), ("preact_resnet18", 224)])
def test_imagenet_models_classify_and_trace(arch, size):
    model = models.create_model(False, "imagenet", arch, device_ids=-1).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (1, 1000)
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), logits)


def test_mobilenet_width_multiplier_scales_channels():
    widths = {arch: models.create_model(False, "imagenet", arch, device_ids=-1).fc.in_features
              for arch in ("mobilenet", "mobilenet_075", "mobilenet_050", "mobilenet_025")}
    assert widths == {"mobilenet": 1024, "mobilenet_075": 768, "mobilenet_050": 512, "mobilenet_025": 256}
    model = models.create_model(False, "imagenet", "mobilenet", device_ids=-1)
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 13 and all(m.groups == m.in_channels == m.out_channels for m in depthwise)


def test_preact_resnet50_uses_bottlenecks():
    model = models.create_model(False, "imagenet", "preact_resnet50", device_ids=-1)
    assert model.fc.in_features == 2048
    assert count(model, nn.Conv2d, (3, 3)) == 16 and count(model, nn.Conv2d, (7, 7)) == 1


def test_dataset_helpers():
    assert models.dataset_input_shape("digits") == (1, 3, 32, 32)
    assert models.dataset_input_shape("CIFAR10") == (1, 3, 32, 32)
    assert models.dataset_input_shape("mnist") == (1, 1, 28, 28)
    assert models.dataset_input_shape("imagenet") == (1, 3, 224, 224)
    assert models.dataset_num_classes("imagenet") == 1000
    assert models.datasets_of_arch("resnet20_cifar") == ("cifar10", "digits")
    assert models.datasets_of_arch("simplenet_mnist") == ("mnist",)
    assert models.is_model_for_dataset("vgg16_cifar", "digits")
    assert not models.is_model_for_dataset("resnet18", "digits")
    assert models.list_models("digits") == models.list_models("cifar10")


def test_unknown_arch_suggests_close_names():
    with pytest.raises(ArgumentError, match=r"unknown architecture 'resnet21_cifar'.*'resnet20_cifar'"):
        models.create_model(False, "cifar10", "resnet21_cifar")


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(ArgumentError, match=r"unknown dataset 'cifar'.*'cifar10'"):
        models.create_model(False, "cifar", "resnet20_cifar")


@pytest.mark.parametrize("arch,dataset,supported", [
    ("resnet20_cifar", "imagenet", "cifar10 and digits datasets"),
    ("simplenet_mnist", "cifar10", "mnist dataset"),
    ("resnet18", "digits", "imagenet dataset"),
])
def test_arch_dataset_mismatch_names_supported_datasets(arch, dataset, supported):
    with pytest.raises(ArgumentError, match=rf"'{arch}' is built for the {supported}, not for '{dataset}'"):
        models.create_model(False, dataset, arch)


def test_pretrained_unavailable_for_own_architectures():
    for arch, dataset in (("resnet20_cifar", "cifar10"), ("simplenet_mnist", "mnist"), ("mobilenet", "imagenet")):
        with pytest.raises(ArgumentError, match=f"no pretrained weights are available for '{arch}'"):
            models.create_model(True, dataset, arch)


# torchvision's own builder, Distiller's ResNet variant and a patched torchvision model load the same weights
@pytest.mark.parametrize("arch", ["squeezenet1_1", "resnet18", "mobilenet_v2"])
def test_pretrained_offline_gives_clear_error(monkeypatch, tmp_path, arch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty weights cache

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with pytest.raises(InputFileError, match=rf"could not download the pretrained weights of '{arch}'"
                                           r".*network access") as info:
        models.create_model(True, "imagenet", arch)
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_model_is_on_cpu_and_not_wrapped_without_gpus():
    model = models.create_model(False, "digits", "simplenet_cifar", parallel=True)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(model.parameters()).device.type == expected
    if torch.cuda.device_count() < 2:
        assert not isinstance(model, nn.DataParallel)
    forced = models.create_model(False, "digits", "simplenet_cifar", device_ids=-1)
    assert next(forced.parameters()).device.type == "cpu"


def test_device_ids_are_validated(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert create._cuda_devices([1]) == [1]
    assert create._cuda_devices(None) == [1, 0]
    assert create._cuda_devices(-1) == []
    with pytest.raises(ArgumentError, match=r"device_ids \[0, 5\]: \[5\] not among the 2 CUDA"):
        models.create_model(False, "digits", "simplenet_cifar", device_ids=[0, 5])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_model_on_cuda_device():
    model = models.create_model(False, "digits", "simplenet_cifar", device_ids=[0])
    assert next(model.parameters()).device == torch.device("cuda", 0)


def test_register_model_adds_an_architecture(monkeypatch):
    monkeypatch.setattr(registry, "MODELS", registry.MODELS.copy())

    @models.register_model("mnist")
    def linear_mnist(num_classes=10):
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, num_classes))

    assert "linear_mnist" in models.list_models("mnist")
    model = models.create_model(False, "mnist", "linear_mnist", device_ids=-1)
    assert model(torch.zeros(models.dataset_input_shape("mnist"))).shape == (1, 10)
    with pytest.raises(ArgumentError, match="'resnet20_cifar' is already registered"):
        models.register_model("cifar10", name="resnet20_cifar")(linear_mnist)
    with pytest.raises(ArgumentError, match="unknown model family 'svhn'"):
        models.register_model("svhn")


@pytest.mark.parametrize("arch, size", [("googlenet", 64), ("inception_v3", 80)])
def test_torchvision_models_with_auxiliary_heads_return_plain_logits_in_training(arch, size):
    model = models.create_model(False, "imagenet", arch, parallel=False, device_ids=-1).train()
    output = model(torch.randn(2, 3, size, size))
    assert isinstance(output, torch.Tensor) and output.shape == (2, 1000)
