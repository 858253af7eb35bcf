"""Latency as AMC's budget: the table (with a synthetic clock), its cache, its predictions."""
import json

import pytest
import torch
from torch import nn

from distiller.amc import AMCEnvironment
from distiller.amc import latency as latency_module
from distiller.amc.latency import LatencyModel, load_or_build_latency_table
from distiller.errors import ArgumentError, InputFileError
from distiller.summaries.compute import model_macs
from distiller.testing import TinyCNN, TinyResidualNet

from .conftest import EXAMPLE, DepthwiseNet, constant_scores

PER_MAC, OVERHEAD = 1e-9, 1.25


@pytest.fixture
def clock(monkeypatch):
    """A synthetic ``measure_latency``: a layer costs its MACs, a network its layers' MACs times an overhead
    factor (the rest of its ops); counts its calls."""
    calls = []

    def fake(module, inputs, min_run_time=0.05):
        calls.append(module)
        seconds = PER_MAC * model_macs(module, inputs[:1]) * inputs.shape[0]
        return seconds if isinstance(module, (nn.Conv2d, nn.Linear)) else OVERHEAD * seconds
    monkeypatch.setattr(latency_module, "measure_latency", fake)
    return calls


def table_for(env: AMCEnvironment, path, batch_size: int = 4, source=None) -> dict:
    return load_or_build_latency_table(str(path), env.model, EXAMPLE, env.costs, env.narrowest(), batch_size,
                                       levels=3, source=source)


@pytest.mark.parametrize("model", [TinyCNN(), TinyResidualNet(), DepthwiseNet()], ids=lambda m: type(m).__name__)
def test_the_model_predicts_the_latency_of_thinned_networks(clock, tmp_path, model):
    env = AMCEnvironment(model, EXAMPLE, constant_scores)
    predict = LatencyModel(env.costs, table_for(env, tmp_path / "table.json"))
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        env.reset()
        for action in torch.rand(len(env.steps), generator=generator).tolist():
            *_, info = env.step(action)
        network = info["result"].model
        measured = latency_module.measure_latency(network, EXAMPLE.expand(4, -1, -1, -1))
        assert predict(env._keep) == pytest.approx(measured, rel=1e-6)


def test_the_table_is_built_once_and_reused_from_the_run_directory(clock, tmp_path):
    env = AMCEnvironment(TinyCNN(), EXAMPLE, constant_scores)
    path = tmp_path / "latency_table.json"
    table = table_for(env, path)
    timed = len(clock)
    assert timed > 0 and json.loads(path.read_text()) == json.loads(json.dumps(table))
    assert table_for(env, path) == json.loads(path.read_text()) and len(clock) == timed
    elsewhere = tmp_path / "next_run.json"
    table_for(env, elsewhere, source=str(path))
    assert elsewhere.is_file() and len(clock) == timed
    table_for(env, path, batch_size=8)  # another batch size: measured again, not reused
    assert len(clock) > timed


def test_a_table_from_another_setting_or_no_table_at_all_is_refused(clock, tmp_path):
    env = AMCEnvironment(TinyCNN(), EXAMPLE, constant_scores)
    path = tmp_path / "latency_table.json"
    table_for(env, path, batch_size=8)
    with pytest.raises(ArgumentError, match="differs in: batch_size"):
        table_for(env, tmp_path / "other.json", source=str(path))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputFileError, match="broken.json"):
        table_for(env, tmp_path / "other.json", source=str(tmp_path / "broken.json"))


def test_a_latency_budget_clips_the_actions(clock, tmp_path):
    env = AMCEnvironment(TinyResidualNet(), EXAMPLE, constant_scores)
    predict = LatencyModel(env.costs, table_for(env, tmp_path / "table.json"))
    env.set_budget(0.5, predict)
    env.reset()
    for _ in env.steps:
        *_, info = env.step(0.0)
    assert info["result"].cost == pytest.approx(predict(env._keep))
    assert info["result"].cost <= 0.5 * predict(env.deps.in_use)
    with pytest.raises(ArgumentError, match="target latency 0.05 is unreachable"):
        env.set_budget(0.05, predict, cost_name="latency")


def test_timing_noise_cannot_make_a_wider_layer_faster(monkeypatch, tmp_path):
    noisy = iter([3.0, 1.0, 2.0, 0.5] * 100)  # seconds per call, in measurement order
    monkeypatch.setattr(latency_module, "measure_latency", lambda module, inputs, min_run_time=0.05: next(noisy))
    env = AMCEnvironment(TinyCNN(), EXAMPLE, constant_scores)
    predict = LatencyModel(env.costs, table_for(env, tmp_path / "table.json"))
    for layer in env.costs.layers:
        grid_in, grid_out, seconds = predict.table[layer.name]
        assert torch.equal(seconds, seconds.cummax(0).values.cummax(1).values)
        widths = [predict.layer_latency(layer, grid_in[-1], width) for width in range(grid_out[0], grid_out[-1] + 1)]
        assert widths == sorted(widths)


def test_layers_that_cannot_be_timed_alone_are_named(clock, tmp_path):
    class Transposed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3)
            self.up = nn.ConvTranspose2d(6, 4, 2)
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.head(self.up(torch.relu(self.conv(x))))
    env = AMCEnvironment(Transposed(), EXAMPLE, constant_scores)
    with pytest.raises(ArgumentError, match="'up' is a ConvTranspose2d"):
        table_for(env, tmp_path / "table.json")
