"""PostTrainLinearQuantizer's Distiller arguments fpq_module and also_clip_weights."""
import pytest
import torch

from distiller.errors import ArgumentError
from distiller.quantization import FP16Wrapper, RangeLinearQuantParamLayerWrapper
from distiller.quantization.range_linear import FPWrapper


def test_fpq_module_64_runs_layers_in_double_precision(float_model, quantize, test_batch):
    _, model = quantize(fpq_module=64)
    assert isinstance(model.conv1, FPWrapper) and model.conv1.wrapped_module.weight.dtype == torch.float64
    assert not any(isinstance(m, RangeLinearQuantParamLayerWrapper) for m in model.modules())
    with torch.no_grad():
        output = model(test_batch)
        expected = float_model(test_batch)
    assert output.dtype == torch.float32
    torch.testing.assert_close(output, expected, rtol=1e-4, atol=1e-5)  # BN folded, no integer rounding


def test_fpq_module_16_is_fp16_and_overrides_keep_integer_layers(quantize):
    _, model = quantize(fpq_module=16, overrides={"fc": {"fpq_module": None}})
    assert isinstance(model.conv1, FP16Wrapper)
    assert isinstance(model.fc, RangeLinearQuantParamLayerWrapper)
    with pytest.raises(ArgumentError, match="fpq_module"):
        quantize(fpq_module=8)


def test_also_clip_weights_reaches_the_layer_wrappers(quantize):
    _, plain = quantize(clip_acts="N_STD", clip_n_stds=1.0)
    _, clipped = quantize(clip_acts="N_STD", clip_n_stds=1.0, also_clip_weights=True)
    assert clipped.fc.also_clip_weights and not plain.fc.also_clip_weights
    assert clipped.fc.w_scale > plain.fc.w_scale  # a narrower weight range: finer steps
    with pytest.raises(ArgumentError, match="also_clip_weights cannot clip weights with clip_acts AVG"):
        quantize(clip_acts="AVG", also_clip_weights=True)
