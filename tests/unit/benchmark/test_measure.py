"""distiller.benchmark: measure, compare and their timing, on tiny CPU models."""
import pytest
import torch
from torch import nn

from distiller.benchmark import (COLUMNS, compare, format_table, interleaved_latencies_ms, measure,
                                 state_dict_bytes)
from distiller.errors import ArgumentError
from distiller.summaries.compute import model_macs, model_params
from distiller.testing import TinyCNN

INPUT = torch.randn(3, 3, 8, 8)


def test_measure_reports_each_batch_size_with_the_models_size_and_compute():
    model = TinyCNN().train()
    table = measure(model, INPUT, batch_sizes=(1, 4), warmup=1, repeats=3)
    assert list(table.columns) == COLUMNS and table["batch_size"].tolist() == [1, 4]
    assert (table["latency_ms"] > 0).all()
    expected_throughput = table["batch_size"] * 1000 / table["latency_ms"]
    assert table["throughput_per_s"].tolist() == pytest.approx(expected_throughput.tolist())
    assert (table["params"] == model_params(model)).all()
    assert (table["macs_per_sample"] == model_macs(model, INPUT[:1])).all()
    assert (table["file_bytes"] == state_dict_bytes(model)).all()
    assert model.training                                    # eval mode only while timing


def test_nonzero_params_count_pruned_weights_out():
    model = TinyCNN()
    with torch.no_grad():
        model.fc.weight.zero_()
    table = measure(model, INPUT, warmup=0, repeats=1)
    expected = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    assert table.at[0, "nonzero_params"] == expected < table.at[0, "params"]


def test_batches_repeat_the_first_sample_and_dtype_applies_to_a_copy():
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            seen.append((x.shape[0], x.dtype, bool((x == x[:1]).all())))
            return self.linear(x)

    model = Recorder()
    measure(model, torch.randn(5, 4), dtype=torch.bfloat16, batch_sizes=(3,), warmup=0, repeats=2)
    assert (3, torch.bfloat16, True) in seen
    assert model.linear.weight.dtype == torch.float32        # the caller's model is not converted


def test_compare_gives_speedup_and_size_ratio_against_dense():
    torch.manual_seed(0)
    table = compare(TinyCNN(width=8), TinyCNN(width=2), INPUT, batch_sizes=(1, 2), warmup=1, repeats=3)
    assert table["model"].tolist() == ["dense", "compressed", "dense", "compressed"]
    dense, small = table.iloc[0], table.iloc[1]
    assert dense["speedup"] == pytest.approx(1.0) and dense["size_ratio"] == pytest.approx(1.0)
    assert small["params"] < dense["params"] and small["macs_per_sample"] < dense["macs_per_sample"]
    assert small["size_ratio"] == pytest.approx(small["file_bytes"] / dense["file_bytes"]) and small["size_ratio"] < 1
    assert small["speedup"] == pytest.approx(dense["latency_ms"] / small["latency_ms"])
    text = format_table(table)
    assert "compressed" in text and "speedup" in text


def test_timed_calls_are_interleaved_after_warmup():
    order = []
    times = interleaved_latencies_ms({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                                     torch.device("cpu"), warmup=1, repeats=2)
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert {name: len(durations) for name, durations in times.items()} == {"a": 2, "b": 2}


@pytest.mark.parametrize("kwargs", [{"batch_sizes": ()}, {"batch_sizes": (0,)}, {"repeats": 0}])
def test_bad_batch_sizes_or_repeats_are_refused(kwargs):
    with pytest.raises(ArgumentError, match="batch sizes >= 1 and repeats >= 1"):
        measure(TinyCNN(), INPUT, **kwargs)
