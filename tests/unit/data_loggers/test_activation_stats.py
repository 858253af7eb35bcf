"""Summary and records activation-statistics collectors: values checked against hand-computed numbers and
torch, weighted over batches of different sizes; Excel/CSV round trips; hooks; bad input."""
from collections import OrderedDict

import pandas as pd
import pytest
import torch
from torch import nn

import distiller
from distiller.data_loggers import (CollectorDirection, RecordsActivationStatsCollector,
                                    SummaryActivationStatsCollector, collector_context, collectors_context)
from distiller.data_loggers.activation_stats import _sheet_names
from distiller.errors import ArgumentError, UnmatchedNameError

# two batches of [N, C=2, L=2] pre-activations, of 1 and 3 samples
BATCH_A = torch.tensor([[[1., -1.], [0., 2.]]])
BATCH_B = torch.tensor([[[2., 2.], [-1., -1.]],
                        [[0., 4.], [3., -2.]],
                        [[-5., 6.], [1., 1.]]])


def _run(model, *batches):
    for batch in batches:
        model(batch)


def _summary(model, stat_name, summary_fn, **kwargs):
    collector = SummaryActivationStatsCollector(model, stat_name, summary_fn, **kwargs)
    with collector_context(collector):
        _run(model, BATCH_A, BATCH_B)
    return collector


# Per sample and channel, after ReLU: A = [[1, 0], [0, 2]]; B = [[2, 2], [0, 0]], [[0, 4], [3, 0]], [[0, 6], [1, 1]].
# The means are over the 4 samples (a mean of the two batch means would differ for channel 0 of APoZ/L1/mean).
@pytest.mark.parametrize("summary_fn, expected", [
    (distiller.utils.activation_channels_apoz, [(50 + 0 + 50 + 50) / 4, (50 + 100 + 50 + 0) / 4]),
    (distiller.utils.activation_channels_l1, [(1 + 4 + 4 + 6) / 4, (2 + 0 + 3 + 2) / 4]),
    (distiller.utils.activation_channels_means, [(0.5 + 2 + 2 + 3) / 4, (1 + 0 + 1.5 + 1) / 4]),
], ids=["apoz", "l1", "means"])
def test_per_channel_summaries_are_sample_weighted_means(summary_fn, expected):
    collector = _summary(nn.Sequential(nn.ReLU()), "stat", summary_fn)
    assert list(collector.value()) == ["0"]
    assert collector.value()["0"] == pytest.approx(expected)


def test_scalar_summary_weights_each_batch_by_its_size():
    collector = _summary(nn.Sequential(nn.ReLU()), "sparsity", distiller.utils.sparsity)
    # batch A: 2 of 4 zeros (1 sample); batch B: 5 of 12 zeros (3 samples)
    assert collector.value()["0"] == pytest.approx((0.5 * 1 + 5 / 12 * 3) / 4)
    assert isinstance(collector.value()["0"], float)


def test_input_direction_sees_the_input_of_an_in_place_module():
    collector = _summary(nn.Sequential(nn.ReLU(inplace=True)), "mean_in", distiller.utils.activation_channels_means,
                         collector_direction=CollectorDirection.IFM)
    # raw inputs, per sample and channel: A: 0, 1; B: (2, -1), (2, 0.5), (0.5, 1)
    assert collector.value()["0"] == pytest.approx([(0 + 2 + 2 + 0.5) / 4, (1 - 1 + 0.5 + 1) / 4])
    assert collector.collector_direction is CollectorDirection.IN


def test_only_modules_of_the_classes_are_collected_and_reset_forgets(tiny_model):
    collector = SummaryActivationStatsCollector(tiny_model, "sparsity", distiller.utils.sparsity,
                                                classes=[nn.ReLU, nn.Linear])
    with collector_context(collector):
        tiny_model(torch.randn(2, 3, 8, 8))
    assert list(collector.value()) == ["relu1", "relu2", "fc"]
    collector.reset()
    assert collector.value() == {}


def test_start_with_a_module_list_restricts_collection(tiny_model):
    collector = SummaryActivationStatsCollector(tiny_model, "sparsity", distiller.utils.sparsity)
    with collector_context(collector, ["relu2"]):
        tiny_model(torch.randn(2, 3, 8, 8))
    assert list(collector.value()) == ["relu2"]
    with pytest.raises(UnmatchedNameError, match="conv9"):
        collector.start(["conv9"])


def _forward_hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_collectors_context_starts_all_and_removes_their_hooks(tiny_model):
    collectors = {"sparsity": SummaryActivationStatsCollector(tiny_model, "sparsity", distiller.utils.sparsity),
                  "records": RecordsActivationStatsCollector(tiny_model, classes=[nn.Conv2d]),
                  "none": None}
    with collectors_context(collectors) as running:
        assert running is collectors
        assert _forward_hook_count(tiny_model) == 4  # two ReLUs, two convolutions
        tiny_model(torch.randn(2, 3, 8, 8))
    assert _forward_hook_count(tiny_model) == 0
    assert list(collectors["sparsity"].value()) == ["relu1", "relu2"]
    assert list(collectors["records"].value()) == ["conv1", "conv2"]
    with pytest.raises(RuntimeError, match="boom"):
        with collectors_context(collectors):
            raise RuntimeError("boom")
    assert _forward_hook_count(tiny_model) == 0
    assert collectors["sparsity"].value() == {}  # entering the context reset the collectors


def test_remove_all_hooks(tiny_model):
    collector = RecordsActivationStatsCollector(tiny_model).start()
    assert _forward_hook_count(tiny_model) == 2
    collector.remove_all_hooks()
    assert _forward_hook_count(tiny_model) == 0


def test_records_are_per_sample_and_match_torch(tiny_model):
    outputs = []
    tiny_model.conv2.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    collector = RecordsActivationStatsCollector(tiny_model, classes=[nn.Conv2d])
    generator = torch.Generator().manual_seed(1)
    with collector_context(collector):
        tiny_model(torch.randn(3, 3, 8, 8, generator=generator))
        tiny_model(torch.randn(5, 3, 8, 8, generator=generator))
    flat = torch.cat(outputs).flatten(1)
    records = collector.value()["conv2"]
    assert len(records["min"]) == 8
    assert records["min"] == pytest.approx(flat.amin(dim=1).tolist())
    assert records["max"] == pytest.approx(flat.amax(dim=1).tolist())
    assert records["mean"] == pytest.approx(flat.mean(dim=1).tolist(), abs=1e-6)
    assert records["std"] == pytest.approx(flat.std(dim=1).tolist())
    assert records["l2"] == pytest.approx(flat.norm(dim=1).tolist())
    assert min(records["min"]) == pytest.approx(flat.min().item())
    assert records["shape"] == "(5, 16, 8, 8)"


def test_records_of_one_value_per_sample_have_zero_std():
    model = nn.Sequential(nn.Linear(3, 1), nn.ReLU())
    collector = RecordsActivationStatsCollector(model)
    with collector_context(collector):
        model(torch.randn(4, 3))
    assert collector.value()["1"]["std"] == [0.0] * 4


def test_per_channel_summary_xlsx_and_csv_round_trip(tmp_path):
    model = nn.Sequential(OrderedDict(relu_a=nn.ReLU(), mid=nn.Identity(), relu_b=nn.ReLU()))
    collector = _summary(model, "apoz_channels", distiller.utils.activation_channels_apoz)
    path = collector.save(tmp_path / "apoz_channels")
    assert path == str(tmp_path / "apoz_channels.xlsx")
    sheets = pd.read_excel(path, sheet_name=None, index_col=0)
    assert list(sheets) == ["apoz_channels"]
    table = sheets["apoz_channels"]
    assert list(table.index) == ["relu_a", "relu_b"]
    assert table.loc["relu_b"].tolist() == pytest.approx(collector.value()["relu_b"])
    csv_table = pd.read_csv(collector.save(tmp_path / "apoz.csv"), index_col=0)
    assert csv_table.loc["relu_b"].tolist() == pytest.approx(collector.value()["relu_b"])


def test_scalar_summary_table_has_one_column_named_after_the_statistic(tmp_path):
    collector = _summary(nn.Sequential(OrderedDict(relu=nn.ReLU())), "sparsity", distiller.utils.sparsity)
    table = pd.read_excel(collector.save(tmp_path / "s.xlsx"), index_col=0)
    assert list(table.columns) == ["sparsity"]
    assert table.loc["relu", "sparsity"] == pytest.approx(collector.value()["relu"])


def test_records_xlsx_has_a_sheet_per_module_and_csv_a_row_per_sample(tiny_model, tmp_path):
    collector = RecordsActivationStatsCollector(tiny_model)
    with collector_context(collector):
        tiny_model(torch.randn(3, 3, 8, 8))
    sheets = pd.read_excel(collector.save(tmp_path / "records"), sheet_name=None, index_col=0)
    assert list(sheets) == ["relu1", "relu2"]
    assert list(sheets["relu2"].columns) == ["min", "max", "mean", "std", "l2", "shape"]
    assert sheets["relu2"]["max"].tolist() == pytest.approx(collector.value()["relu2"]["max"])
    table = pd.read_csv(collector.save(tmp_path / "records.csv"))
    assert len(table) == 6 and table["module"].tolist() == ["relu1"] * 3 + ["relu2"] * 3
    assert table["l2"].tolist()[3:] == pytest.approx(collector.value()["relu2"]["l2"])


def test_sheet_names_are_valid_and_distinct():
    long_a, long_b = "features." + "a" * 30 + ".relu", "classifier." + "a" * 30 + ".relu"
    names = _sheet_names([long_a, long_b, "x/y", "X/Y"])
    assert all(len(n) <= 31 and not set(n) & set("[]:*?/\\") for n in names)
    assert len({n.lower() for n in names}) == 4
    assert names[0] == long_a[-31:]


def test_classes_matching_no_module_is_a_user_error_listing_the_model_types(tiny_model):
    with pytest.raises(ArgumentError, match=r"LSTM.*BatchNorm2d, Conv2d, Linear, ReLU"):
        SummaryActivationStatsCollector(tiny_model, "s", distiller.utils.sparsity, classes=[nn.LSTM])
    with pytest.raises(ArgumentError, match="GRU"):
        RecordsActivationStatsCollector(tiny_model, classes=(nn.GRU,))
    with pytest.raises(ArgumentError, match="Module subclasses"):
        RecordsActivationStatsCollector(tiny_model, classes=["ReLU"])


def test_bad_summary_function_and_direction(tiny_model):
    with pytest.raises(ArgumentError, match="summary_fn .*callable"):
        SummaryActivationStatsCollector(tiny_model, "s", "sparsity")
    with pytest.raises(ArgumentError, match="collector_direction"):
        SummaryActivationStatsCollector(tiny_model, "s", distiller.utils.sparsity, collector_direction="sideways")
    assert SummaryActivationStatsCollector(tiny_model, "s", distiller.utils.sparsity,
                                           collector_direction="in").collector_direction is CollectorDirection.IN
