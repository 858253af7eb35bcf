"""Calibration statistics: values, YAML round trip, module selection, in-place handling, errors."""
import pytest
import torch
import yaml
from torch import nn

from distiller.data_loggers import (QuantCalibrationStatsCollector, collect_quant_stats, load_quant_stats,
                                    save_quant_stats)
from distiller.errors import UnmatchedNameError


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.fc(x) + x)


@pytest.fixture
def data():
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(5, 6, generator=generator) * (i + 1) for i in range(3)]


def test_statistics_match_direct_computation(data):
    torch.manual_seed(0)
    model = _Residual()
    stats = collect_quant_stats(model, lambda m: [m(x) for x in data])
    assert list(stats) == ["fc", "relu", "add"]  # the functional add is collected as a module
    everything = torch.cat(data)
    record = stats["fc"]["inputs"][0]
    assert record["min"] == pytest.approx(everything.min().item())
    assert record["max"] == pytest.approx(everything.max().item())
    assert record["avg_min"] == pytest.approx(everything.min(dim=1).values.mean().item(), rel=1e-5)
    assert record["avg_max"] == pytest.approx(everything.max(dim=1).values.mean().item(), rel=1e-5)
    assert record["mean"] == pytest.approx(everything.mean().item(), abs=1e-6)
    assert record["std"] == pytest.approx(everything.std(unbiased=False).item(), rel=1e-5)
    assert record["b"] == pytest.approx((everything - everything.mean()).abs().mean().item(), rel=1e-5)
    assert record["shape"] == [1, 6] and record["total_numel"] == everything.numel()
    # the in-place ReLU's input is recorded before it runs: it has negative values
    assert stats["relu"]["inputs"][0]["min"] < 0 and stats["relu"]["output"]["min"] == 0
    assert not hasattr(model, "add")  # collected on a converted copy, the model is untouched


def test_yaml_round_trip_is_plain_and_loadable(data, tmp_path):
    stats = collect_quant_stats(_Residual(), lambda m: [m(x) for x in data], save_dir=str(tmp_path))
    path = tmp_path / "acts_quantization_stats.yaml"
    text = path.read_text()
    assert "!!python" not in text
    assert yaml.safe_load(text) == stats
    assert load_quant_stats(str(path)) == stats
    assert load_quant_stats(save_quant_stats(stats, str(tmp_path / "sub" / "again.yaml"))) == stats


def test_collector_selection_and_inplace_options(data):
    model = _Residual()
    collector = QuantCalibrationStatsCollector(model, modules_to_collect=["fc"]).start()
    model(data[0])
    collector.stop()
    assert list(collector.value()) == ["fc"]
    assert "b" not in collector.value()["fc"]["output"]  # b needs the second pass
    only_relu = QuantCalibrationStatsCollector(model, classes=[nn.ReLU]).start()
    model(data[0])
    assert list(only_relu.value()) == ["relu"]
    only_relu.stop()
    checking = QuantCalibrationStatsCollector(model, inplace_runtime_check=True).start()
    with pytest.raises(RuntimeError, match="'relu'.*in place"):
        model(data[0])
    checking.stop()
    QuantCalibrationStatsCollector(model, disable_inplace_attrs=True)
    assert model.relu.inplace is False


def test_bad_input_is_reported(tmp_path, data):
    with pytest.raises(UnmatchedNameError, match="fcc"):
        QuantCalibrationStatsCollector(_Residual(), modules_to_collect=["fcc"])
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        load_quant_stats(str(tmp_path / "nowhere.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"fc": {"output": {"min": 0.0, "max": 1.0}}}))
    with pytest.raises(ValueError, match="'fc.output' lacks"):
        load_quant_stats(str(bad))
    with pytest.raises(RuntimeError, match="no module ran"):
        collect_quant_stats(_Residual(), lambda m: None)
