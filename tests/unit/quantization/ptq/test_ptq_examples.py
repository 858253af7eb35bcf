"""The post-training-quantization example configurations (``--qe-config-file``) build on resnet20_cifar and
quantize the layer inputs they set as they say."""
import argparse
import glob
import os

import pytest
import torch

from distiller.cli.quantization import add_post_train_quant_args, check_quantization_args, quantizer_from_args
from distiller.data_loggers import collect_quant_stats
from distiller.models import create_model
from distiller.quantization import RangeLinearFakeQuantWrapper, RangeLinearQuantWrapper
from distiller.quantization.export.pt2e import build_pt2e_model
from distiller.quantization.q_utils import ClipMode

EXAMPLES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples", "quantization",
                                         "post_train_quant", "*.yaml")))


def test_examples_exist():
    assert {os.path.basename(p) for p in EXAMPLES} >= {"resnet20_digits_post_train.yaml",
                                                       "resnet20_digits_post_train_input_overrides.yaml",
                                                       "resnet20_digits_post_train_fake.yaml"}


@pytest.fixture(scope="module")
def resnet20_and_stats():
    torch.manual_seed(0)
    model = create_model(False, "digits", "resnet20_cifar", parallel=False).eval()
    batch = torch.randn(4, 3, 32, 32)
    return model, collect_quant_stats(model, lambda m: m(batch)), batch


def _config_args(path):
    parser = argparse.ArgumentParser()
    add_post_train_quant_args(parser)
    return parser.parse_args(["--qe-config-file", path])


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_quantizes_resnet20(path, resnet20_and_stats):
    float_model, stats, batch = resnet20_and_stats
    model = create_model(False, "digits", "resnet20_cifar", parallel=False).eval()
    model.load_state_dict(float_model.state_dict())
    args = _config_args(path)
    check_quantization_args(model, args)  # what the application runs before reading data
    quantizer = quantizer_from_args(model, args, stats)
    quantizer.prepare_model(batch[:1])
    wrappers = {name: m for name, m in model.named_modules() if isinstance(m, RangeLinearQuantWrapper)}
    assert "conv1" in wrappers and "fc" in wrappers and "layer3.2.residual_eltwiseadd" in wrappers
    for name, wrapper in wrappers.items():
        for index, given in (quantizer.module_overrides_map[name].get("input_overrides") or {}).items():
            assert wrapper.input_settings[index].clip_acts == given.get("clip_acts", wrapper.clip_acts)
            assert (name, index) not in quantizer.shared_inputs
    with torch.no_grad():
        out, expected = model(batch), float_model(batch)
    assert (out.argmax(1) == expected.argmax(1)).all() and (out - expected).abs().max() < 0.2 * expected.abs().max()


def test_input_overrides_example_sets_the_model_input_and_the_classifier_input(resnet20_and_stats):
    float_model, stats, batch = resnet20_and_stats
    path = next(p for p in EXAMPLES if p.endswith("_input_overrides.yaml"))
    model = create_model(False, "digits", "resnet20_cifar", parallel=False).eval()
    quantizer = quantizer_from_args(model, _config_args(path), stats)
    quantizer.prepare_model(batch[:1])
    assert model.conv1.input_settings[0].clip_acts == ClipMode.NONE and model.conv1.clip_acts == ClipMode.AVG
    assert model.fc.input_settings[0].clip_acts == ClipMode.AVG and model.fc.clip_acts == ClipMode.NONE
    assert quantizer.shared_inputs[("layer1.0.conv1", 0)] == "conv1"  # other inputs still reuse their producer's


def test_fake_example_runs_the_first_layer_in_float_and_exports(resnet20_and_stats):
    float_model, stats, batch = resnet20_and_stats
    path = next(p for p in EXAMPLES if p.endswith("_fake.yaml"))
    model = create_model(False, "digits", "resnet20_cifar", parallel=False).eval()
    model.load_state_dict(float_model.state_dict())
    quantizer = quantizer_from_args(model, _config_args(path), stats)
    quantizer.prepare_model(batch[:1])
    assert isinstance(model.conv1, RangeLinearFakeQuantWrapper) and model.conv1.relu_fused
    assert isinstance(model.relu, torch.nn.Identity) and not quantizer.inputs_quant_auto_fallback
    assert quantizer.shared_inputs[("layer1.0.conv1", 0)] == "conv1"
    converted = build_pt2e_model(model)  # the graph compile_int8 compiles
    assert type(converted.get_submodule("conv1")) is torch.nn.Conv2d  # float, between (de)quantize
    with torch.no_grad():
        simulated, integer = model(batch), converted(batch)
    assert (simulated.argmax(1) == integer.argmax(1)).all()
    # requantization ties (x * scale in the simulation, x / scale in the kernels) may fall the other way in some of
    # the 20 layers, a step each (the integer-only example differs by two steps on this batch too)
    assert (simulated - integer).abs().max().item() <= 3.01 / model.fc.output_scale.item()
