"""A tiny model with the structures post-training quantization must handle, and calibration fixtures."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distiller.data_loggers import collect_quant_stats
from distiller.quantization import PostTrainLinearQuantizer


class Block(nn.Module):
    """A residual block whose add is functional (``out + x``), as in the model zoo."""

    def __init__(self, width):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + x)


class ResidualConcatNet(nn.Module):
    """stem (conv-bn-relu, max-pool) -> residual block -> two conv branches joined by ``torch.cat`` ->
    average pool -> fc."""

    def __init__(self, width=8, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.block = Block(width)
        self.branch_a = nn.Conv2d(width, width, 1)
        self.branch_b = nn.Conv2d(width, width, 3, padding=1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.block(self.pool(self.relu(self.bn1(self.conv1(x)))))
        x = torch.cat([torch.relu(self.branch_a(x)), torch.relu(self.branch_b(x))], 1)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomize_batchnorms(model, generator):
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.3, 0.3, generator=generator)


@pytest.fixture
def float_model():
    torch.manual_seed(0)
    model = ResidualConcatNet().eval()
    randomize_batchnorms(model, torch.Generator().manual_seed(1))
    return model


@pytest.fixture
def calib_batches():
    generator = torch.Generator().manual_seed(2)
    return [torch.randn(16, 3, 8, 8, generator=generator) for _ in range(3)]


@pytest.fixture
def test_batch():
    return torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(3))


@pytest.fixture
def stats(float_model, calib_batches):
    return collect_quant_stats(float_model, lambda model: [model(x) for x in calib_batches])


@pytest.fixture
def quantize(float_model, stats):
    """``quantize(**quantizer_kwargs) -> (quantizer, simulated model)`` on a copy of ``float_model``."""
    def build(**kwargs):
        kwargs.setdefault("model_activation_stats", stats)
        model = copy.deepcopy(float_model)
        quantizer = PostTrainLinearQuantizer(model, **kwargs)
        quantizer.prepare_model(torch.randn(1, 3, 8, 8))
        return quantizer, model
    return build


class TanhStem(nn.Module):
    """A layer without integer arithmetic (tanh) reads the model's input."""

    def __init__(self):
        super().__init__()
        self.tanh = nn.Tanh()
        self.conv = nn.Conv2d(3, 4, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.relu(self.conv(self.tanh(x))), 1))


@pytest.fixture
def tanh_stem():
    """(model, its calibration statistics, a test batch)."""
    torch.manual_seed(0)
    model = TanhStem().eval()
    batches = [torch.randn(8, 3, 4, 4) * 2 for _ in range(2)]
    return model, collect_quant_stats(model, lambda m: [m(x) for x in batches]), torch.randn(16, 3, 4, 4) * 2


@pytest.fixture
def check_config_file(tmp_path):
    """``check(model, overrides_yaml)``: runs the app's check of ``--qe-config-file`` on a PostTrainLinearQuantizer
    config whose ``overrides:`` block is ``overrides_yaml`` (indented as under ``overrides:``)."""
    import argparse

    from distiller.cli.quantization import add_post_train_quant_args, check_quantization_args

    def check(model, overrides_yaml):
        config = tmp_path / "ptq.yaml"
        config.write_text("quantizers:\n  ptq:\n    class: PostTrainLinearQuantizer\n    overrides:\n" + overrides_yaml)
        parser = argparse.ArgumentParser()
        add_post_train_quant_args(parser)
        check_quantization_args(model, parser.parse_args(["--qe-config-file", str(config)]))
    return check


class ReLU6Net(nn.Module):
    """conv-bn-ReLU6 (module) -> conv-F.relu6 (functional) -> fc, as in MobileNet v2."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu6 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)
        with torch.no_grad():
            self.conv2.weight.mul_(20)  # outputs well beyond 6, so the ReLU6 clamps

    def forward(self, x):
        x = self.relu6(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(F.relu6(self.conv2(x)), 1))


@pytest.fixture
def relu6_model():
    """``relu6_model(mode) -> (simulated ReLU6Net, its calibration statistics)``."""
    return _relu6_model


def _relu6_model(mode):
    model = ReLU6Net().eval()
    batches = [torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    stats = collect_quant_stats(model, lambda m: [m(x) for x in batches])
    PostTrainLinearQuantizer(model, model_activation_stats=stats, mode=mode).prepare_model(batches[0][:1])
    return model, stats

