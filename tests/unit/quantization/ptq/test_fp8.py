"""FP8 (E4M3) Linear quantization: simulation error bounds, when the scaled-matmul kernel runs, static input
scales, quantizer integration."""
import copy
import logging

import pytest
import torch
from torch import nn

from distiller.quantization import FP8LinearWrapper, PostTrainLinearQuantizer, fp8
from distiller.quantization.fp8 import FP8_E4M3_MAX, FP8_SCALINGS, fp8_scaled_matmul, quantize_to_fp8


def test_quantize_to_fp8_relative_error_is_that_of_three_mantissa_bits():
    x = torch.randn(64, 32) * torch.logspace(-2, 2, 32)
    q, scale = quantize_to_fp8(x, per_row=False)
    assert q.dtype == torch.float8_e4m3fn and q.float().abs().max() <= FP8_E4M3_MAX
    back = q.float() * scale
    normal = back.abs() > 2 ** -6 * scale  # E4M3 normal numbers: relative error <= 2^-4
    assert ((back - x).abs() <= x.abs() * 2 ** -4 + 1e-12)[normal].all()


def test_per_row_scales_track_rows_of_different_magnitude():
    torch.manual_seed(0)
    weights = torch.randn(8, 16) * torch.logspace(-3, 1, 8).unsqueeze(1)
    errors = {}
    linear = nn.Linear(16, 8, bias=False)
    with torch.no_grad():
        linear.weight.copy_(weights)
    for scaling in ("per_tensor", "per_row"):
        wrapper = FP8LinearWrapper(linear, scaling)
        errors[scaling] = ((wrapper.weight_fp8.float() * wrapper.weight_scale - weights).abs() /
                           weights.abs().clamp(min=1e-8))[0].median()
    assert errors["per_row"] < errors["per_tensor"]


@pytest.mark.parametrize("scaling", ["per_tensor", "per_row"])
def test_fp8_linear_simulation_close_to_float_and_logged_once(scaling, caplog):
    torch.manual_seed(1)
    linear = nn.Linear(32, 16)
    x = torch.randn(4, 5, 32)
    wrapper = FP8LinearWrapper(copy.deepcopy(linear), scaling)
    fp8._logged_simulation.clear()
    with caplog.at_level(logging.INFO, logger="distiller.quantization.fp8"):
        out, again = wrapper(x), wrapper(x)
    assert out.shape == (4, 5, 16) and torch.equal(out, again)
    expected = linear(x)
    assert ((out - expected).abs().max() / expected.abs().max()).item() < 0.06
    assert sum("simulated" in r.message for r in caplog.records) == 1


def test_simulation_equals_torch_scaled_mm():
    torch.manual_seed(2)
    x_fp8, x_scale = quantize_to_fp8(torch.randn(16, 32), per_row=True)
    w_fp8, w_scale = quantize_to_fp8(torch.randn(48, 32), per_row=True)
    try:
        kernel = fp8_scaled_matmul(x_fp8, x_scale, w_fp8, w_scale, torch.float32)
    except (RuntimeError, NotImplementedError):
        pytest.skip("torch._scaled_mm is not available on this device")
    simulated = (x_fp8.float() * x_scale) @ (w_fp8.float() * w_scale).t()
    assert torch.allclose(kernel, simulated, rtol=1e-5, atol=1e-5)


def test_quantizer_fp8_applies_to_linear_layers_only(float_model, stats):
    quantizer = PostTrainLinearQuantizer(copy.deepcopy(float_model), model_activation_stats=stats, fp8=True,
                                         fp8_scaling="per_row")
    quantizer.prepare_model()
    assert isinstance(quantizer.model.fc, FP8LinearWrapper) and quantizer.model.fc.scaling == "per_row"
    assert not isinstance(quantizer.model.conv1, FP8LinearWrapper)
    with pytest.raises(ValueError, match="'conv1' is Conv2d"):
        PostTrainLinearQuantizer(copy.deepcopy(float_model), overrides={"conv1": {"fp8": True}}).prepare_model()
    with pytest.raises(ValueError, match="fp8_scaling"):
        PostTrainLinearQuantizer(copy.deepcopy(float_model), fp8=True, fp8_scaling="per_block")


@pytest.fixture
def scaled_mm_calls(monkeypatch):
    """Records the calls of ``torch._scaled_mm`` (which still runs)."""
    calls, kernel = [], torch._scaled_mm

    def spy(a, b, *args, **kwargs):
        calls.append((tuple(a.shape), tuple(b.shape)))
        return kernel(a, b, *args, **kwargs)
    monkeypatch.setattr(torch, "_scaled_mm", spy)
    return calls


@pytest.mark.parametrize("scaling", FP8_SCALINGS)
def test_fp8_kernel_is_used_where_supported_and_the_shape_allows(scaling, scaled_mm_calls, monkeypatch):
    # torch._scaled_mm also runs on CPU: pretend the platform supports FP8 matrix units to test the dispatch
    torch.manual_seed(4)
    linear, x = nn.Linear(32, 16), torch.randn(2, 4, 32)
    simulated = FP8LinearWrapper(copy.deepcopy(linear), scaling)(x)
    assert scaled_mm_calls == []
    monkeypatch.setattr(fp8, "fp8_scaled_mm_supported", lambda device: True)
    out = FP8LinearWrapper(copy.deepcopy(linear), scaling)(x)
    assert scaled_mm_calls == [((8, 32), (32, 16))]
    assert out.dtype == x.dtype and out.shape == (2, 4, 16)
    assert torch.allclose(out, simulated, rtol=1e-2, atol=1e-2)  # per_row accumulates in bfloat16
    FP8LinearWrapper(nn.Linear(20, 12), scaling)(torch.randn(3, 20))  # not multiples of 16: simulated
    assert len(scaled_mm_calls) == 1


@pytest.mark.cuda
def test_fp8_linear_on_cuda_uses_the_fp8_kernel_when_supported(scaled_mm_calls):
    if not torch.cuda.is_available() or not fp8.fp8_scaled_mm_supported("cuda"):
        pytest.skip("needs a GPU of compute capability >= 8.9")
    torch.manual_seed(3)
    linear = nn.Linear(64, 32).cuda()
    x = torch.randn(16, 64, device="cuda")
    out = FP8LinearWrapper(copy.deepcopy(linear), "per_row")(x)
    assert scaled_mm_calls == [((16, 64), (64, 32))]
    assert ((out - linear(x)).abs().max() / linear(x).abs().max()).item() < 0.06


def test_wrapper_buffers_live_on_the_device_of_the_wrapped_layer():
    stats = {"inputs": {0: {"min": -1.0, "max": 1.0}}}
    wrapper = FP8LinearWrapper(nn.Linear(16, 8).to("meta"), "per_tensor", stats)
    assert {name: b.device.type for name, b in wrapper.named_buffers()} == dict.fromkeys(
        ["weight_fp8", "weight_scale", "input_scale"], "meta")


@pytest.mark.cuda
def test_static_input_scale_runs_the_fp8_kernel_on_cuda(scaled_mm_calls):
    if not fp8.fp8_scaled_mm_supported("cuda"):
        pytest.skip("needs a GPU of compute capability >= 8.9")
    torch.manual_seed(6)
    linear = nn.Linear(64, 32).cuda()
    x = torch.randn(16, 64, device="cuda").clamp(-2, 2)
    out = FP8LinearWrapper(copy.deepcopy(linear), "per_tensor", {"inputs": {0: {"min": -2.0, "max": 2.0}}})(x)
    assert len(scaled_mm_calls) == 1
    assert ((out - linear(x)).abs().max() / linear(x).abs().max()).item() < 0.06


@pytest.mark.parametrize("input_index", [0, "0"])  # statistics from Python or read back from YAML
def test_static_input_scale_saturates_at_the_calibrated_range(input_index):
    torch.manual_seed(5)
    linear = nn.Linear(16, 8)
    stats = {"inputs": {input_index: {"min": -2.0, "max": 1.0}}}
    wrapper = FP8LinearWrapper(copy.deepcopy(linear), "per_tensor", stats)
    assert wrapper.input_scale.item() == pytest.approx(2.0 / FP8_E4M3_MAX)
    assert "static_input_scale=True" in repr(wrapper)
    x = torch.randn(4, 16).clamp(-1, 1)
    beyond, at_limit = x.clone(), x.clone()
    beyond[0, 0], at_limit[0, 0] = 50.0, 2.0
    assert torch.equal(wrapper(beyond), wrapper(at_limit))  # clipped to the calibrated max |x|
    dynamic = FP8LinearWrapper(copy.deepcopy(linear), "per_tensor")
    assert not torch.equal(dynamic(beyond), dynamic(at_limit))
    assert torch.allclose(wrapper(x), linear(x), atol=0.05)


def test_quantizer_gives_fp8_layers_static_input_scales_from_statistics(float_model, stats):
    per_tensor = PostTrainLinearQuantizer(copy.deepcopy(float_model), model_activation_stats=stats, fp8=True)
    per_tensor.prepare_model()
    fc_input = stats["fc"]["inputs"][0]
    expected = max(abs(fc_input["min"]), abs(fc_input["max"])) / FP8_E4M3_MAX
    assert per_tensor.model.fc.input_scale.item() == pytest.approx(expected)
    per_row = PostTrainLinearQuantizer(copy.deepcopy(float_model), model_activation_stats=stats, fp8=True,
                                       fp8_scaling="per_row")
    per_row.prepare_model()
    assert torch.isnan(per_row.model.fc.input_scale)  # one scale per token, measured on each batch


@pytest.mark.parametrize("scaling, stats", [("per_tensor", None), ("per_row", None),
                                            ("per_tensor", {"inputs": {0: {"min": -1.0, "max": 1.0}}})])
def test_forward_never_reads_a_device_value_on_the_host(scaling, stats):
    # on the meta device any host read of a tensor value (bool(), .item()) raises: on a GPU it would be a sync
    wrapper = FP8LinearWrapper(nn.Linear(32, 16), scaling, stats).to("meta")
    assert wrapper(torch.empty(2, 5, 32, device="meta")).shape == (2, 5, 16)


def test_a_loaded_input_scale_decides_whether_the_scale_is_static():
    torch.manual_seed(7)
    linear, x = nn.Linear(16, 8), torch.randn(4, 16)
    static = FP8LinearWrapper(copy.deepcopy(linear), "per_tensor", {"inputs": {0: {"min": -0.5, "max": 0.5}}})
    dynamic = FP8LinearWrapper(copy.deepcopy(linear), "per_tensor")
    assert not torch.equal(static(x), dynamic(x))
    dynamic.load_state_dict(static.state_dict())
    assert torch.equal(dynamic(x), static(x)) and "static_input_scale=True" in repr(dynamic)
    static.load_state_dict(FP8LinearWrapper(copy.deepcopy(linear), "per_tensor").state_dict())
    assert "static_input_scale=False" in repr(static)


@pytest.mark.parametrize("dtype, scaling, kernel_dtype", [(torch.bfloat16, "per_tensor", torch.bfloat16),
                                                          (torch.float32, "per_tensor", torch.float32),
                                                          (torch.float32, "per_row", torch.bfloat16)])
def test_per_tensor_kernel_writes_the_input_dtype_directly(dtype, scaling, kernel_dtype, monkeypatch):
    out_dtypes, kernel = [], torch._scaled_mm

    def spy(a, b, *args, **kwargs):
        out_dtypes.append(kwargs["out_dtype"])
        return kernel(a, b, *args, **kwargs)
    monkeypatch.setattr(torch, "_scaled_mm", spy)
    monkeypatch.setattr(fp8, "fp8_scaled_mm_supported", lambda device: True)
    out = FP8LinearWrapper(nn.Linear(32, 16).to(dtype), scaling)(torch.randn(4, 32, dtype=dtype))
    assert out_dtypes == [kernel_dtype] and out.dtype == dtype
