"""Bad quantization settings raise members of the user-error family; a bad override names its pattern; the
Python API and a YAML schedule raise the same error for the same value."""
import copy

import pytest
import torch
from torch import nn

from distiller.config import dict_config
from distiller.errors import ArgumentError, ScheduleError, UserError
from distiller.graph.capture import GraphCaptureError
from distiller.quantization import (ClipMode, DorefaQuantizer, FP8LinearWrapper, LinearQuantMode, PACTQuantizer,
                                    PostTrainLinearQuantizer, QuantAwareTrainRangeLinearQuantizer, Quantizer)
from distiller.quantization.overrides import override_pattern
from distiller.quantization.q_utils import parse_clip_mode, verify_quant_mode
from distiller.registry import QUANTIZERS

ARGUMENT_ERRORS = {
    "bit_width": lambda m: Quantizer(m, bits_weights=33),
    "overrides_type": lambda m: Quantizer(m, overrides="fc"),
    "quant_mode": lambda m: verify_quant_mode("symetric"),
    "quant_mode_keys": lambda m: verify_quant_mode({"activations": "sym"}),
    "clip_mode": lambda m: parse_clip_mode("lapalce"),
    "n_std_without_n_stds": lambda m: PostTrainLinearQuantizer(m, clip_acts="N_STD"),
    "fp8_scaling": lambda m: PostTrainLinearQuantizer(m, fp8=True, fp8_scaling="per_block"),
    "stats_of_another_model": lambda m: PostTrainLinearQuantizer(m, model_activation_stats={
        "conv9": {"output": {k: 0.0 for k in ("min", "max", "avg_min", "avg_max", "mean", "std")}}}),
    "fp8_wrapper_scaling": lambda m: FP8LinearWrapper(m.fc, "per_block"),
    "pact_clip_init": lambda m: PACTQuantizer(m, None, act_clip_init_val=-1.0),
    "dorefa_bias_bits": lambda m: DorefaQuantizer(m, None, bits_bias=8),
    "qat_ema_decay": lambda m: QuantAwareTrainRangeLinearQuantizer(m, ema_decay=1.5),
    "qat_freeze_bn_delay": lambda m: QuantAwareTrainRangeLinearQuantizer(m, freeze_bn_delay=-1),
    "activations_unreachable": lambda m: Quantizer(nn.Sequential(nn.Linear(2, 2)), bits_activations=8).check_settings(),
}


@pytest.mark.parametrize("build", ARGUMENT_ERRORS.values(), ids=ARGUMENT_ERRORS.keys())
def test_bad_arguments_are_argument_errors(build, relu_cnn):
    with pytest.raises(ArgumentError):
        build(relu_cnn)


OVERRIDE_ERRORS = {
    "bit_width": ("fc", lambda m: Quantizer(m, overrides={"fc": {"bits_activations": 0}})),
    "not_a_mapping": ("fc", lambda m: Quantizer(m, overrides={"fc": 8})),
    "ptq_unknown_setting": ("fc", lambda m: PostTrainLinearQuantizer(m, overrides={"fc": {"clip_act": "AVG"}})),
    "ptq_bad_mode": ("conv.*", lambda m: PostTrainLinearQuantizer(m, overrides={"conv.*": {"mode": "symetric"}})),
    "ptq_bad_accum_bits": ("fc", lambda m: PostTrainLinearQuantizer(m, overrides={"fc": {"bits_accum": 0}})),
    "ptq_fp8_on_a_conv": ("conv1", lambda m: PostTrainLinearQuantizer(
        m, overrides={"conv1": {"fp8": True}}).check_settings()),
    "ptq_n_std_without_n_stds": ("fc", lambda m: PostTrainLinearQuantizer(
        m, overrides={"fc": {"clip_acts": "N_STD"}}).check_settings()),
    "qat_setting_not_taken": ("relu.*", lambda m: QuantAwareTrainRangeLinearQuantizer(
        m, overrides={"relu.*": {"ema": 0.9}}).check_settings()),
    "qat_setting_for_unreplaced_module": ("conv1", lambda m: QuantAwareTrainRangeLinearQuantizer(
        m, overrides={"conv1": {"mode": "sym"}}).check_settings()),
    "unmatched_pattern": ("fcc", lambda m: Quantizer(m, overrides={"fcc": {"bits_weights": 4}})),
}


@pytest.mark.parametrize("pattern, build", OVERRIDE_ERRORS.values(), ids=OVERRIDE_ERRORS.keys())
def test_bad_overrides_name_their_pattern(pattern, build, relu_cnn):
    with pytest.raises(UserError) as caught:
        build(relu_cnn)
    assert override_pattern(caught.value) == pattern and f"'{pattern}'" in str(caught.value)


def test_override_settings_are_typed_like_the_arguments_they_override(relu_cnn):
    quantizer = PostTrainLinearQuantizer(relu_cnn, overrides={"fc": {"clip_acts": "n_std", "clip_n_stds": "2e0",
                                                                     "mode": "asym_u", "bits_accum": 16}})
    assert quantizer.overrides == [("fc", {"clip_acts": ClipMode.N_STD, "clip_n_stds": 2.0, "bits_accum": 16,
                                           "mode": (LinearQuantMode.ASYMMETRIC_UNSIGNED,) * 2})]
    with pytest.raises(ArgumentError, match=r"argument 'overrides\['fc'\]\['clip_half_range'\]' expects true or false"):
        PostTrainLinearQuantizer(relu_cnn, overrides={"fc": {"clip_half_range": "no"}})


SAME_ERRORS = {
    "dorefa_bias_bits": ("DorefaQuantizer", {"bits_bias": 8}),
    "wrpn_weight_bits": ("WRPNQuantizer", {"bits_weights": 0}),
    "pact_clip_init": ("PACTQuantizer", {"act_clip_init_val": -1.0}),
    "pact_override_bits": ("PACTQuantizer", {"overrides": {"relu1": {"bits_activations": 64}}}),
    "qat_ema_decay": ("QuantAwareTrainRangeLinearQuantizer", {"ema_decay": 1.5}),
    "qat_mode": ("QuantAwareTrainRangeLinearQuantizer", {"mode": {"activations": "asym_u", "weights": "symetric"}}),
    "qat_freeze_bn_delay": ("QuantAwareTrainRangeLinearQuantizer", {"freeze_bn_delay": "never"}),
}


@pytest.mark.parametrize("class_name, args", SAME_ERRORS.values(), ids=SAME_ERRORS.keys())
def test_python_and_yaml_callers_get_the_same_error(class_name, args, relu_cnn):
    optimizer = torch.optim.SGD(relu_cnn.parameters(), lr=0.1)
    with pytest.raises(ArgumentError) as python:
        QUANTIZERS.get(class_name)(relu_cnn, optimizer, **args)
    schedule = {"quantizers": {"q": {"class": class_name, **args}},
                "policies": [{"quantizer": {"instance_name": "q"}, "starting_epoch": 0, "ending_epoch": 2}]}
    with pytest.raises(ScheduleError) as yaml:
        dict_config(relu_cnn, optimizer, schedule)
    err = python.value
    assert str(err) in str(yaml.value)
    assert yaml.value.path == ".".join(["quantizers", "q", err.argument, *map(str, err.location)])


def test_check_settings_changes_nothing(relu_cnn):
    before = copy.deepcopy(relu_cnn)
    for quantizer in (PostTrainLinearQuantizer(relu_cnn, fp8=True),
                      QuantAwareTrainRangeLinearQuantizer(relu_cnn, bits_activations=8, bits_weights=4, fold_bn=True),
                      PACTQuantizer(relu_cnn, None, bits_activations=4, bits_weights=4)):
        quantizer.check_settings()
    assert [type(m) for m in relu_cnn.modules()] == [type(m) for m in before.modules()]
    assert relu_cnn.state_dict().keys() == before.state_dict().keys()
    assert all(torch.equal(t, before.state_dict()[k]) for k, t in relu_cnn.state_dict().items())


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = -x
        return self.bn(self.conv(x))


def test_bn_folding_of_an_untraceable_model_is_a_graph_capture_error():
    with pytest.raises(GraphCaptureError, match="torch.fx"):
        QuantAwareTrainRangeLinearQuantizer(_Untraceable(), bits_activations=None, bits_weights=4,
                                            fold_bn=True).prepare_model()
    assert issubclass(GraphCaptureError, UserError)
