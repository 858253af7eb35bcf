"""Tensors added by quantizers follow the device and dtype of the model (float64 here; CUDA when present)."""
import copy
import itertools

import pytest
import torch
from torch import nn

from distiller.data_loggers import collect_quant_stats
from distiller.quantization import (DorefaQuantizer, PACTQuantizer, PostTrainLinearQuantizer,
                                    QuantAwareTrainRangeLinearQuantizer, WRPNQuantizer)
from distiller.quantization.fp8 import FP8LinearWrapper
from distiller.quantization.placement import place_added_tensors

QAT_QUANTIZERS = {
    "range_linear_qat": lambda m, o: QuantAwareTrainRangeLinearQuantizer(m, o, bits_activations=8, bits_weights=4,
                                                                         per_channel_wts=True),
    "range_linear_qat_fold_bn": lambda m, o: QuantAwareTrainRangeLinearQuantizer(m, o, bits_activations=8,
                                                                                 bits_weights=4, fold_bn=True),
    "pact": lambda m, o: PACTQuantizer(m, o, bits_activations=4, bits_weights=4),
    "dorefa": lambda m, o: DorefaQuantizer(m, o, bits_activations=4, bits_weights=3),
    "dorefa_binary": lambda m, o: DorefaQuantizer(m, o, bits_activations=4, bits_weights=1),
    "wrpn": lambda m, o: WRPNQuantizer(m, o, bits_activations=4, bits_weights=4),
}


def _tensors(model):
    return itertools.chain(model.named_parameters(), model.named_buffers())


def _not_of_dtype(model, dtype):
    """Names of floating tensors (float8 storage aside) whose dtype is not ``dtype``."""
    return sorted(name for name, t in _tensors(model) if t.is_floating_point() and t.element_size() > 1
                  and t.dtype != dtype)


@pytest.mark.parametrize("make_quantizer", QAT_QUANTIZERS.values(), ids=QAT_QUANTIZERS.keys())
def test_quantization_aware_training_of_a_float64_model_stays_float64(make_quantizer, relu_cnn, learnable_batches,
                                                                       train_steps):
    model = relu_cnn.double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    quantizer = make_quantizer(model, optimizer)
    quantizer.prepare_model()
    assert _not_of_dtype(model, torch.float64) == []
    train_steps(model, optimizer, quantizer, [(x.double(), y) for x, y in learnable_batches], 2)
    assert _not_of_dtype(model, torch.float64) == []
    optimized = [p for group in optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in optimized} == {id(p) for p in model.parameters()}  # PACT's clip_val included


@pytest.mark.parametrize("fp8", [False, True], ids=["range_linear", "fp8"])
def test_post_training_quantization_of_a_float64_model_stays_float64(fp8, relu_cnn, learnable_batches):
    model = relu_cnn.double().eval()
    batches = [x.double() for x, _ in learnable_batches[:2]]
    stats = collect_quant_stats(model, lambda m: [m(x) for x in batches])
    quantizer = PostTrainLinearQuantizer(model, model_activation_stats=stats, fp8=fp8)
    quantizer.prepare_model()
    assert isinstance(model.fc, FP8LinearWrapper) == fp8
    assert _not_of_dtype(model, torch.float64) == []
    with torch.no_grad():
        assert model(batches[0]).dtype == torch.float64
    assert _not_of_dtype(model, torch.float64) == []


class _Wrapper(nn.Module):
    def __init__(self, wrapped):
        super().__init__()
        self.wrapped = wrapped
        self.register_buffer("scale", torch.ones(3))
        self.register_buffer("count", torch.zeros(1, dtype=torch.long))
        self.register_buffer("fp8", torch.zeros(2, dtype=torch.float8_e4m3fn))


class _Clip(nn.Module):
    def __init__(self):
        super().__init__()
        self.clip_val = nn.Parameter(torch.tensor([6.0]))


def test_added_tensors_take_the_dtype_of_what_they_wrap_or_of_their_parent():
    model = nn.Sequential(nn.Linear(3, 3).double(), nn.ReLU(), nn.Linear(3, 2).half())
    existing = [*model.parameters(), *model.buffers()]
    model[0], model[1], model[2] = _Wrapper(model[0]), _Clip(), _Wrapper(model[2])
    place_added_tensors(model, existing)
    assert model[0].scale.dtype == torch.float64 and model[2].scale.dtype == torch.float16
    clip_val = model[1].clip_val  # no tensor of its own: the model's first float tensor decides
    assert isinstance(clip_val, nn.Parameter) and clip_val.requires_grad and clip_val.dtype == torch.float64
    assert model[0].count.dtype == torch.long and model[0].fp8.dtype == torch.float8_e4m3fn
    assert model[0].wrapped.weight.dtype == torch.float64 and model[2].wrapped.weight.dtype == torch.float16


def test_added_tensors_follow_the_device_of_the_model():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU()).to("meta")
    existing = [*model.parameters(), *model.buffers()]
    model[0], model[1] = _Wrapper(model[0]), _Clip()
    place_added_tensors(model, existing)
    assert {t.device.type for _, t in _tensors(model)} == {"meta"}


@pytest.mark.cuda
@pytest.mark.parametrize("make_quantizer", QAT_QUANTIZERS.values(), ids=QAT_QUANTIZERS.keys())
def test_quantization_aware_training_on_cuda(make_quantizer, relu_cnn, learnable_batches, train_steps):
    model = relu_cnn.cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    quantizer = make_quantizer(model, optimizer)
    quantizer.prepare_model()
    train_steps(model, optimizer, quantizer, [(x.cuda(), y.cuda()) for x, y in learnable_batches], 2)
    assert {name for name, t in _tensors(model) if t.device.type != "cuda"} == set()


@pytest.mark.cuda
@pytest.mark.parametrize("fp8", [False, True], ids=["range_linear", "fp8"])
def test_post_training_quantization_on_cuda(fp8, relu_cnn, learnable_batches):
    model = relu_cnn.cuda().eval()
    batches = [x.cuda() for x, _ in learnable_batches[:2]]
    stats = collect_quant_stats(model, lambda m: [m(x) for x in batches])
    expected = copy.deepcopy(model)
    PostTrainLinearQuantizer(model, model_activation_stats=stats, fp8=fp8).prepare_model()
    assert {name for name, t in _tensors(model) if t.device.type != "cuda"} == set()
    with torch.no_grad():
        assert torch.allclose(model(batches[0]), expected(batches[0]), atol=0.1)
