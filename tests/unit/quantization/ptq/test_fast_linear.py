"""accelerate_linears: per-layer choice of the fastest accurate Linear method (injected timings), reasons for
methods that cannot run, bad input refused before any work, a real CPU run of torchao's int8 weight-only, and
the FP8 path on CUDA."""
import copy

import pytest
import torch
from torch import nn

from distiller.errors import ArgumentError, MissingDependencyError, UnmatchedNameError
from distiller.quantization import FP8LinearWrapper, fp8
from distiller.quantization.export import (LINEAR_METHODS, LinearMethod, acceleration_table, accelerate_linears,
                                           format_accelerations)
from distiller.quantization.export import fast_linear


class Tagged(nn.Module):
    """A converted layer computing exactly what the dense one does, tagged with its method."""

    def __init__(self, layer, method, scale=1.0):
        super().__init__()
        self.layer, self.method, self.scale = layer, method, scale

    def forward(self, x):
        return self.layer(x) * self.scale


def tagging(method, scale=1.0):
    return LinearMethod(method, lambda layer, x: None, lambda layer: Tagged(layer, method, scale), tolerance=0.01)


@pytest.fixture
def fake_methods(monkeypatch):
    """Methods 'a' and 'b' (exact), 'noisy' (10% off) and 'never' (unavailable), registered for the test."""
    monkeypatch.setitem(LINEAR_METHODS, "a", tagging("a"))
    monkeypatch.setitem(LINEAR_METHODS, "b", tagging("b"))
    monkeypatch.setitem(LINEAR_METHODS, "noisy", tagging("noisy", scale=1.1))
    monkeypatch.setitem(LINEAR_METHODS, "never", LinearMethod("never", lambda layer, x: "unavailable: no kernel",
                                                              lambda layer: layer, 0.01))


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 4))


class WithUnused(nn.Module):
    """``body`` plus a Linear layer that forward never calls."""

    def __init__(self, body):
        super().__init__()
        self.body, self.unused = body, nn.Linear(3, 3)

    def forward(self, x):
        return self.body(x)


def timer_by_width(medians, seen=None):
    """A timer returning ``medians[in_features][variant]``; records the variants it was asked to time."""
    def time_calls(calls, device):
        width = next(iter(calls.values())).args[0].shape[-1]
        if seen is not None:
            seen[width] = sorted(calls)
        return {name: medians[width][name] for name in calls}
    return time_calls


def failing_timer(calls, device):
    raise AssertionError("nothing may be timed")


def test_each_layer_gets_its_fastest_method_only_where_above_min_speedup(fake_methods):
    model, x = mlp(), torch.randn(5, 8)
    expected = model(x)
    medians = {8: {"dense": 1.0, "a": 0.5, "b": 0.4},     # b 2.5x: converted with b
               16: {"dense": 1.0, "a": 0.95, "b": 2.0},   # a 1.05x: not above min_speedup 1.1
               24: {"dense": 1.0, "a": 0.8, "b": 0.9}}    # a 1.25x: converted with a
    report = accelerate_linears(model, x, methods=["a", "b"], min_speedup=1.1, timer=timer_by_width(medians))
    assert [(r.name, r.method) for r in report] == [("0", "b"), ("2", None), ("4", "a")]
    assert isinstance(model[0], Tagged) and model[0].method == "b"
    assert type(model[2]) is nn.Linear
    assert isinstance(model[4], Tagged) and model[4].method == "a"
    assert report[0].speedup == pytest.approx(2.5) and report[0].converted_ms == 0.4
    assert report[1].speedup is None and "1.05x, not above min_speedup 1.1" in report[1].reason
    assert [t.outcome for t in report[0].trials] == ["2.00x, slower than b", "chosen"]
    assert report[0].input_shape == (5, 8) and report[2].input_shape == (5, 24) and report[0].dtype == "float32"
    torch.testing.assert_close(model(x), expected)


def test_a_layer_exactly_at_min_speedup_stays_dense(fake_methods):
    model = mlp()
    medians = {w: {"dense": 1.0, "a": 1.0} for w in (8, 16, 24)}
    report = accelerate_linears(model, torch.randn(2, 8), methods=["a"], timer=timer_by_width(medians))
    assert all(r.method is None for r in report) and all(type(m) is not Tagged for m in model)


def test_inaccurate_and_unavailable_methods_are_reported_and_never_timed(fake_methods):
    model, seen = mlp(), {}
    medians = {w: {"dense": 1.0, "a": 0.5, "noisy": 0.1} for w in (8, 16, 24)}
    report = accelerate_linears(model, torch.randn(3, 8), methods=["noisy", "never", "a"],
                                timer=timer_by_width(medians, seen))
    assert seen == {8: ["a", "dense"], 16: ["a", "dense"], 24: ["a", "dense"]}
    noisy, never, chosen = report[0].trials
    assert noisy.outcome.startswith("relative error 0.1000 above tolerance 0.01")
    assert noisy.relative_error == pytest.approx(0.1, rel=1e-4) and noisy.converted_ms is None
    assert never.outcome == "unavailable: no kernel" and chosen.outcome == "chosen"
    assert all(r.method == "a" for r in report)
    # a looser tolerance lets the noisy (and fastest) method through
    again = accelerate_linears(mlp(), torch.randn(3, 8), methods=["noisy", "a"], max_relative_error=0.2,
                               timer=timer_by_width(medians))
    assert all(r.method == "noisy" for r in again)


class Refusing(nn.Module):
    def forward(self, x):
        raise RuntimeError("CUDA error: no kernel image for this shape\nmore detail")


def test_a_method_whose_kernel_refuses_the_layer_is_reported_not_raised(fake_methods, monkeypatch):
    monkeypatch.setitem(LINEAR_METHODS, "refusing", LinearMethod("refusing", lambda layer, x: None,
                                                                 lambda layer: Refusing(), 0.01))
    model = mlp()
    report = accelerate_linears(model, torch.randn(2, 8), methods=["refusing"], timer=failing_timer)
    assert [t.outcome for r in report for t in r.trials] == ["refused: CUDA error: no kernel image for this shape"] * 3
    assert all(type(m) is not Refusing for m in model)


def test_layers_that_cannot_be_converted_say_why(fake_methods):
    model = WithUnused(nn.Sequential(nn.Linear(8, 16), FP8LinearWrapper(nn.Linear(16, 16))))
    report = accelerate_linears(model, torch.randn(2, 8), methods=["never"], timer=failing_timer)
    reasons = {r.name: r.reason for r in report}
    assert reasons == {"body.0": "no method could run it",
                       "body.1.wrapped_module": "held by a FP8LinearWrapper: already quantized",
                       "unused": "not called on the example inputs"}
    assert report[0].trials[0].outcome == "unavailable: no kernel"


def test_unavailable_builtin_methods_give_their_reasons(monkeypatch):
    model = nn.Sequential(nn.Linear(32, 24))
    monkeypatch.setattr(fast_linear, "_torchao_int8_weight_only", lambda: None)
    report = accelerate_linears(model, torch.randn(2, 32), timer=failing_timer)
    outcomes = {t.method: t.outcome for t in report[0].trials}
    assert "compute capability >= 8.9 (the layer runs on cpu)" in outcomes["fp8"]
    assert outcomes["fp8_per_row"] == outcomes["fp8"]
    assert "torchao is not installed (pip install 'distiller[int8]'" in outcomes["int8_weight_only"]
    monkeypatch.setattr(fast_linear, "fp8_scaled_mm_supported", lambda device: True)
    report = accelerate_linears(model, torch.randn(2, 32), methods=["fp8"], timer=failing_timer)
    assert "in and out features divisible by 16, the layer has 32 -> 24" in report[0].trials[0].outcome
    with pytest.raises(MissingDependencyError, match="int8 weight-only Linear layers need torchao"):
        accelerate_linears(model, torch.randn(2, 32), methods=["int8_weight_only"], timer=failing_timer)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"methods": ["fp8", "int8_weight_onyl"]}, ArgumentError, "unknown method 'int8_weight_onyl'; did you mean "
                                                              "'int8_weight_only'"),
    ({"methods": []}, ArgumentError, "methods is empty"),
    ({"min_speedup": 0}, ArgumentError, "'min_speedup' expects a number > 0"),
    ({"min_speedup": -1.5}, ArgumentError, "'min_speedup' expects a number > 0"),
    ({"names": ["1"]}, ArgumentError, "'1' is a ReLU, not an nn.Linear"),
    ({"names": ["2.weight"]}, UnmatchedNameError, "'2.weight' matches no Linear layer of the model"),
    ({"names": "2"}, ArgumentError, "'names'"),
])
def test_bad_input_is_refused_before_any_work(kwargs, error, match):
    model = mlp()
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error, match=match):
        accelerate_linears(model, torch.randn(2, 8), timer=failing_timer, **kwargs)
    assert calls == [] and all(type(m) is not Tagged for m in model)
    torch.testing.assert_close(model.state_dict(), before)


def test_a_bare_linear_is_refused():
    with pytest.raises(ArgumentError, match="bare nn.Linear"):
        accelerate_linears(nn.Linear(4, 4), torch.randn(1, 4), timer=failing_timer)


def test_names_restrict_the_layers(fake_methods):
    model, seen = mlp(), {}
    medians = {w: {"dense": 1.0, "a": 0.5} for w in (8, 16, 24)}
    report = accelerate_linears(model, torch.randn(2, 8), methods=["a"], names=["2"],
                                timer=timer_by_width(medians, seen))
    assert [r.name for r in report] == ["2"] and list(seen) == [16]
    assert isinstance(model[2], Tagged) and type(model[0]) is nn.Linear


def test_compiled_timing_times_compiled_modules_with_dynamo_limits_raised(fake_methods):
    seen = []

    def time_calls(calls, device):
        seen.append((sorted(type(c.func).__name__ for c in calls.values()), torch._dynamo.config.recompile_limit))
        return {name: 1.0 if name == "dense" else 0.5 for name in calls}
    report = accelerate_linears(mlp(), torch.randn(2, 8), methods=["a"], compiled=True, timer=time_calls)
    assert seen[0][0] == ["OptimizedModule", "OptimizedModule"] and seen[0][1] > 1000 and len(seen) == 3
    assert torch._dynamo.config.recompile_limit == 8      # restored
    assert all(r.method == "a" for r in report)


def test_fp8_conversion_runs_the_scaled_mm_path_on_cpu(monkeypatch):
    # torch._scaled_mm runs on CPU too: pretend the platform has FP8 matrix units to exercise the GPU path
    monkeypatch.setattr(fast_linear, "fp8_scaled_mm_supported", lambda device: True)
    monkeypatch.setattr(fp8, "fp8_scaled_mm_supported", lambda device: True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 16))
    x = torch.randn(4, 6, 32)
    expected = model(x)
    medians = {32: {"dense": 1.0, "fp8": 0.7, "fp8_per_row": 0.6}, 64: {"dense": 1.0, "fp8": 0.6, "fp8_per_row": 0.7}}
    report = accelerate_linears(model, x, methods=["fp8", "fp8_per_row"], timer=timer_by_width(medians))
    assert [r.method for r in report] == ["fp8_per_row", "fp8"]
    assert isinstance(model[0], FP8LinearWrapper) and model[0].scaling == "per_row"
    assert isinstance(model[2], FP8LinearWrapper) and model[2].scaling == "per_tensor"
    assert all(0 < t.relative_error < 0.08 for r in report for t in r.trials)
    assert ((model(x) - expected).norm() / expected.norm()) < 0.08


def test_int8_weight_only_really_runs_on_cpu():
    pytest.importorskip("torchao")
    from torchao.quantization import Int8Tensor
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))
    x = torch.randn(16, 64)
    expected = model(x)
    report = accelerate_linears(model, x, methods=["int8_weight_only"], warmup=1, repeats=3)
    assert [r.name for r in report] == ["0", "2"]
    for layer in report:
        (trial,) = layer.trials
        assert 0 < trial.relative_error < 0.02 and layer.dense_ms > 0 and trial.converted_ms > 0
        converted = isinstance(model.get_submodule(layer.name).weight, Int8Tensor)
        assert converted == (layer.method == "int8_weight_only") == (trial.outcome == "chosen")
    torch.testing.assert_close(model(x), expected, rtol=0.05, atol=0.05)
    # whatever the timings, any speedup above a tiny min_speedup converts; a converted layer is left alone
    accelerate_linears(model, x, methods=["int8_weight_only"], min_speedup=1e-9, warmup=0, repeats=1)
    assert all(isinstance(model.get_submodule(layer.name).weight, Int8Tensor) for layer in report)
    again = accelerate_linears(model, x, methods=["int8_weight_only"], timer=failing_timer)
    assert [r.reason for r in again] == ["weight is already a Int8Tensor"] * 2


def test_table_has_a_row_per_trial_and_one_per_skipped_layer(fake_methods):
    model = WithUnused(mlp())
    medians = {w: {"dense": 2.0, "a": 1.0} for w in (8, 16, 24)}
    report = accelerate_linears(model, torch.randn(2, 8), methods=["a", "never"], timer=timer_by_width(medians))
    table = acceleration_table(report)
    assert list(table["layer"]) == ["body.0", "body.0", "body.2", "body.2", "body.4", "body.4", "unused"]
    first = table.iloc[0]
    assert (first["method"], first["dense_ms"], first["converted_ms"], first["speedup"], first["outcome"],
            first["decision"]) == ("a", 2.0, 1.0, 2.0, "chosen", "a")
    assert table.iloc[-1]["outcome"] == "not called on the example inputs" and table.iloc[-1]["decision"] == "dense"
    text = format_accelerations(report)
    assert "unavailable: no kernel" in text and "nan" not in text


@pytest.mark.slow
def test_int8_weight_only_compiled_on_cpu():
    pytest.importorskip("torchao")
    from distiller.quantization.export import check_cpp_compiler
    check_cpp_compiler()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))
    x = torch.randn(4, 64)
    expected = model(x)
    report = accelerate_linears(model, x, methods=["int8_weight_only"], compiled=True, warmup=2, repeats=3)
    assert all(r.trials[0].converted_ms > 0 and r.trials[0].relative_error < 0.02 for r in report)
    torch.testing.assert_close(model(x), expected, rtol=0.05, atol=0.05)


@pytest.mark.cuda
def test_fp8_on_cuda_is_accurate_and_timed_on_transformer_shapes():
    if not fp8.fp8_scaled_mm_supported("cuda"):
        pytest.skip("needs compute capability >= 8.9")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024)).cuda().bfloat16()
    x = torch.randn(2048, 1024, device="cuda", dtype=torch.bfloat16)
    expected = model(x)
    report = accelerate_linears(model, x, methods=["fp8", "fp8_per_row"], warmup=2, repeats=5)
    for layer in report:
        assert layer.input_shape[0] == 2048 and layer.dense_ms > 0
        for trial in layer.trials:
            assert trial.relative_error < 0.08 and trial.converted_ms > 0
        assert isinstance(model.get_submodule(layer.name), FP8LinearWrapper) == (layer.method is not None)
    assert ((model(x).float() - expected.float()).norm() / expected.float().norm()) < 0.1


@pytest.mark.cuda
def test_fp8_is_unavailable_below_compute_capability_8_9():
    if fp8.fp8_scaled_mm_supported("cuda"):
        pytest.skip("this GPU has FP8 matrix units")
    model = nn.Sequential(nn.Linear(64, 64)).cuda()
    report = accelerate_linears(model, torch.randn(4, 64, device="cuda"), methods=["fp8"], timer=failing_timer)
    assert "compute capability >= 8.9" in report[0].trials[0].outcome and report[0].method is None


@pytest.mark.cuda
def test_int8_weight_only_on_cuda_compiled():
    pytest.importorskip("torchao")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 1024)).cuda().bfloat16()
    x = torch.randn(8, 1024, device="cuda", dtype=torch.bfloat16)
    expected = model(x)
    report = accelerate_linears(model, x, methods=["int8_weight_only"], compiled=True, warmup=3, repeats=5)
    assert report[0].trials[0].relative_error < 0.02 and report[0].trials[0].converted_ms > 0
    torch.testing.assert_close(model(x), expected, rtol=0.05, atol=0.05)


def test_shared_input_recorder_returns_the_first_input_of_each_named_module():
    from distiller.graph.capture import record_first_inputs
    model = WithUnused(mlp())
    x = torch.randn(2, 8)
    model.train()
    inputs = record_first_inputs(model, x, ["body.0", "body.2", "unused"])
    assert sorted(inputs) == ["body.0", "body.2"] and torch.equal(inputs["body.0"], x)
    torch.testing.assert_close(inputs["body.2"], torch.relu(model.body[0](x)))
    assert model.training and not inputs["body.2"].requires_grad
    assert not model.body[0]._forward_pre_hooks

