"""Compute summary: per-layer MACs and shapes (hand-computed), totals, parameter counts, quantized models."""
import pytest
import torch
import torchvision
from torch import nn

from distiller.data_loggers import collect_quant_stats
from distiller.quantization import PACTQuantizer, PostTrainLinearQuantizer, QuantAwareTrainRangeLinearQuantizer
from distiller.summaries import SUMMARY_COLUMNS, model_macs, model_params, model_performance_summary
from distiller.testing import TinyCNN


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Layers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)                    # 8 x 8x8 outputs x 3*9 MACs
        self.grouped = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)  # 8 x 4x4 x 4*9
        self.depthwise = nn.Conv2d(8, 16, 3, padding=1, groups=8)    # 16 x 4x4 x 1*9
        self.up = nn.ConvTranspose2d(16, 4, 2, stride=2)             # 16 x 4x4 inputs x 4*4
        self.fc = nn.Linear(8, 5)                                    # 4 tokens x 8 x 5

    def forward(self, x):
        x = self.up(self.depthwise(self.grouped(self.conv(x))))
        return self.fc(x.flatten(2).transpose(1, 2)[:, :4, :].repeat(1, 1, 2))


def test_layer_rows_have_hand_computed_macs_and_shapes():
    df = model_performance_summary(Layers(), torch.randn(1, 3, 8, 8))
    assert list(df.columns) == SUMMARY_COLUMNS
    assert df["Name"].tolist() == ["conv", "grouped", "depthwise", "up", "fc"]
    assert df["MACs"].tolist() == [8 * 64 * 27, 8 * 16 * 36, 16 * 16 * 9, 16 * 16 * 16, 4 * 8 * 5]
    row = df.set_index("Name").loc["grouped"]
    assert row["IFM"] == (1, 8, 8, 8) and row["OFM"] == (1, 8, 4, 4) and row["OFM volume"] == 128
    assert row["Weights volume"] == 8 * 4 * 9 and row["Attrs"] == "k=3x3, s=2x2, g=2"


def test_counts_are_per_sample_and_the_model_is_left_as_it_was():
    model = Layers().train()
    single = model_performance_summary(model, torch.randn(1, 3, 8, 8))
    batch = model_performance_summary(model, torch.randn(4, 3, 8, 8))
    assert single["MACs"].tolist() == batch["MACs"].tolist()
    assert single["IFM volume"].tolist() == batch["IFM volume"].tolist()
    assert model.training and not any(m._forward_hooks for m in model.modules())


def test_resnet18_total_matches_the_published_count():
    assert model_macs(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224)) == 1_814_073_344


def test_model_params_counts_shared_parameters_once():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert model_params(model) == 20


QUANTIZERS = {
    "post_train": lambda model, stats: PostTrainLinearQuantizer(model, model_activation_stats=stats),
    "post_train_weights_only": lambda model, stats: PostTrainLinearQuantizer(model, bits_activations=None),
    "post_train_fp8": lambda model, stats: PostTrainLinearQuantizer(model, model_activation_stats=stats, fp8=True),
    "qat": lambda model, stats: QuantAwareTrainRangeLinearQuantizer(model, bits_activations=8, bits_weights=4),
    "qat_fold_bn": lambda model, stats: QuantAwareTrainRangeLinearQuantizer(model, bits_activations=8,
                                                                            bits_weights=4, fold_bn=True),
    "pact": lambda model, stats: PACTQuantizer(model, None, bits_activations=4, bits_weights=4),
}


@pytest.mark.parametrize("make_quantizer", QUANTIZERS.values(), ids=QUANTIZERS.keys())
def test_quantized_layers_count_as_the_layers_they_wrap(make_quantizer):
    torch.manual_seed(0)
    model, x = TinyCNN().eval(), torch.randn(2, 3, 8, 8)
    before = model_performance_summary(model, x)
    stats = collect_quant_stats(model, lambda m: m(x))
    make_quantizer(model, stats).prepare_model(x)
    after = model_performance_summary(model, x)
    assert model_macs(model, x) == int(before["MACs"].sum()) > 0
    columns = ["Name", "Attrs", "IFM", "OFM", "Weights volume", "MACs"]
    assert after[columns].values.tolist() == before[columns].values.tolist()


def test_resnet50_totals_torchvisions_4_09_gmacs():
    # shapes are all the count needs: built and run on the meta device, nothing is computed
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    df = model_performance_summary(model, torch.empty(1, 3, 224, 224, device="meta"))
    assert int(df["MACs"].sum()) == 4_089_184_256  # torchvision's "4.09 GFLOPS" (conv + fc MACs)
    assert len(df) == 54  # 53 convolutions (downsample ones included) and the classifier
