"""collector_context: a collector runs exactly for the duration of a with-block."""
import pytest
import torch

from distiller.data_loggers import QuantCalibrationStatsCollector, collector_context
from distiller.errors import ArgumentError


def test_collector_runs_inside_the_block_only(tiny_model):
    collector = QuantCalibrationStatsCollector(tiny_model)
    with collector_context(collector) as running:
        assert running is collector
        tiny_model(torch.randn(2, 3, 8, 8))
    stats = collector.value()
    assert stats["conv1"]["output"]["max"] > 0
    tiny_model(torch.full((2, 3, 8, 8), 100.0))  # after the block: not recorded
    assert collector.value()["conv1"]["output"]["max"] == stats["conv1"]["output"]["max"]


def test_collector_stops_when_the_block_raises(tiny_model):
    collector = QuantCalibrationStatsCollector(tiny_model)
    with pytest.raises(RuntimeError, match="boom"):
        with collector_context(collector):
            raise RuntimeError("boom")
    tiny_model(torch.randn(2, 3, 8, 8))
    assert collector.value() == {}


def test_no_collector_and_module_lists():
    with collector_context(None) as nothing:
        assert nothing is None
    with pytest.raises(ArgumentError, match="takes no module list"):
        with collector_context(QuantCalibrationStatsCollector(torch.nn.Linear(2, 2)), ["0"]):
            pass
