"""--quantize-eval / --qe-* / --lapq-* flags and the quantized-evaluation driver."""
import argparse

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import distiller
from distiller.cli.quantization import (add_post_train_quant_args, check_quantization_args, quantize_and_evaluate,
                                        quantizer_from_args)
from distiller.errors import ArgumentError, InputFileError, ScheduleError
from distiller.quantization import (ClipMode, LinearQuantMode, PostTrainLinearQuantizer,
                                    RangeLinearQuantEltwiseAddWrapper)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = torch.relu(self.conv2(x) + x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_post_train_quant_args(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def loader():
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 3, 6, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator))
            for _ in range(4)]


def _evaluate(model, loader):
    model.eval()
    with torch.no_grad():
        outputs = [(model(x), y) for x, y in loader]
    return {"Top1": 100.0 * sum((o.argmax(1) == y).sum().item() for o, y in outputs) / sum(len(y) for _, y in outputs),
            "Loss": sum(F.cross_entropy(o, y).item() for o, y in outputs) / len(outputs)}


def test_flags_parse_with_distiller_names_and_reject_bad_values(capsys):
    args = _parse("--qe", "--qem", "asym_u", "--qemw", "sym", "--qeba", "0", "--qeca", "avg", "--qepc",
                  "--qenql", "fc", "--qe-lapq", "--lapq-init-mode", "l2", "--lapq-bh")
    assert args.quantize_eval and args.qe_per_channel and args.qe_lapq and args.lapq_basinhopping
    assert args.lapq_init_mode == "L2" and args.qe_bits_acts == 0 and args.qe_no_quant_layers == ["fc"]
    for bad in (["--qe-mode", "symmetric-ish"], ["--qe-bits-wts", "33"], ["--qe-clip-acts", "median"],
                ["--qe-calibration", "1.5"], ["--qe-dynamic", "--qe-stats-file", "s.yaml"]):
        with pytest.raises(SystemExit):
            _parse(*bad)
    assert "symmetric-ish" in capsys.readouterr().err


def test_quantizer_from_args_maps_every_flag():
    model = _Net()
    args = _parse("--qem", "asym_u", "--qemw", "sym", "--qeba", "0", "--qebw", "6", "--qe-bits-accum", "24",
                  "--qenql", "conv1", "--qencl", "fc", "--qeca", "n_std", "--qe-clip-n-stds", "2", "--qesab", "16",
                  "--qe-save-fp-weights", "--qe-fp8", "per_row")
    quantizer = quantizer_from_args(model, args)
    assert quantizer.default_qbits.acts is None and quantizer.default_qbits.wts == 6 and quantizer.bits_accum == 24
    assert quantizer.mode.activations == LinearQuantMode.ASYMMETRIC_UNSIGNED
    assert quantizer.mode.weights == LinearQuantMode.SYMMETRIC
    assert quantizer.module_qbits_map["conv1"].wts is None
    assert quantizer.module_overrides_map["fc"]["clip_acts"] is ClipMode.NONE  # override values are typed
    assert quantizer.scale_approx_mult_bits == 16 and quantizer.save_fp_weights and quantizer._defaults["fp8"]


def test_config_file_builds_the_quantizer_and_reports_bad_arguments(tmp_path):
    good = tmp_path / "ptq.yaml"
    good.write_text(yaml.safe_dump({"quantizers": {"ptq": {"class": "PostTrainLinearQuantizer",
                                                           "bits_activations": 6, "mode": "ASYMMETRIC_UNSIGNED"}}}))
    quantizer = quantizer_from_args(_Net(), _parse("--qe-config-file", str(good)))
    assert quantizer.default_qbits.acts == 6
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"quantizers": {"ptq": {"class": "PostTrainLinearQuantizer", "bit_acts": 6}}}))
    with pytest.raises(ScheduleError, match="bit_acts"):
        quantizer_from_args(_Net(), _parse("--qe-config-file", str(bad)))


@pytest.mark.slow
def test_quantize_and_evaluate_end_to_end(loader, tmp_path):
    torch.manual_seed(0)
    model = _Net().eval()
    args = _parse("--qe", "--qema", "asym_u", "--qemw", "sym", "--qe-calibration", "0.5", "--qe-convert-pytorch",
                  "--qe-export-onnx")
    results = quantize_and_evaluate(model, args, loader, _evaluate, torch.zeros(1, 3, 6, 6), str(tmp_path),
                                    arch="tiny")
    assert isinstance(model.add, RangeLinearQuantEltwiseAddWrapper)
    assert (tmp_path / "acts_quantization_stats.yaml").exists() and (tmp_path / "quantized_qdq.onnx").exists()
    assert results["parity"]["pytorch_int8"]["top1_agreement"] == 1.0
    assert results["parity"]["onnxruntime"]["top1_agreement"] == 1.0
    assert results["pytorch_int8"]["Top1"] == results["quantized"]["Top1"] == results["onnxruntime"]["Top1"]
    fresh = _Net()
    distiller.apputils.load_checkpoint(fresh, results["checkpoint"])
    assert _evaluate(fresh, loader) == results["quantized"]


class _UnreadableLoader:
    """A test loader that fails the test if anything iterates it (calibration, evaluation, LAPQ)."""

    def __len__(self):
        return 4

    def __iter__(self):
        pytest.fail("the data was read before the quantization settings were validated")


CONFIG_WITH_TYPO = """quantizers:
  ptq:
    class: PostTrainLinearQuantizer
    bits_activations: 8
    overrides:
      conv1:
        bits_weights: 6
      fcc:
        clip_acts: NONE
"""


def _quantize(model, *argv, tmp_path):
    return quantize_and_evaluate(model, _parse("--qe", *argv), _UnreadableLoader(), _evaluate,
                                 torch.zeros(1, 3, 6, 6), str(tmp_path))


def test_config_file_override_typo_names_file_yaml_path_and_line_before_calibration(tmp_path):
    config = tmp_path / "ptq.yaml"
    config.write_text(CONFIG_WITH_TYPO)
    model = _Net()
    before = [type(m) for m in model.modules()]
    with pytest.raises(ScheduleError) as caught:
        _quantize(model, "--qe-config-file", str(config), tmp_path=tmp_path)
    error = caught.value
    assert (error.filename, error.path, error.line) == (str(config), "quantizers.ptq.overrides.fcc", 8)
    assert "'fcc' matches no module" in str(error) and "did you mean 'fc'" in str(error)
    assert [type(m) for m in model.modules()] == before and list(tmp_path.iterdir()) == [config]


@pytest.mark.parametrize("flag", ["--qe-no-quant-layers", "--qe-no-clip-layers"])
def test_layer_flag_typo_names_the_flag_before_calibration(flag, tmp_path):
    with pytest.raises(ArgumentError, match=rf"^{flag} fcc: 'fcc' matches no module.*did you mean 'fc'"):
        _quantize(_Net(), flag, "conv1", "fcc", tmp_path=tmp_path)
    assert list(tmp_path.iterdir()) == []


CONFIG_ERRORS = {
    "unknown_argument": ("    bits_activation: 8\n", "quantizers.ptq.bits_activation", 4),
    "bad_value": ("    mode: symetric\n", "quantizers.ptq.mode", 4),
    "bad_value_inside": ("    mode:\n      activations: sym\n      weight: sym\n", "quantizers.ptq.mode", 4),
    "bad_override_setting": ("    overrides:\n      fc:\n        fp8: true\n        fp8_scaling: per_block\n",
                             "quantizers.ptq.overrides.fc.fp8_scaling", 7),
    "fp8_on_a_conv": ("    overrides:\n      conv.*: {fp8: true}\n", "quantizers.ptq.overrides.conv.*.fp8", 5),
    "overrides_not_a_mapping": ("    overrides:\n      fc: 8\n", "quantizers.ptq.overrides.fc", 5),
    "missing_stats_file": ("    model_activation_stats: nowhere.yaml\n", "quantizers.ptq.model_activation_stats", 4),
}


@pytest.mark.parametrize("extra, yaml_path, line", CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
def test_every_config_file_error_has_its_yaml_path_and_line(extra, yaml_path, line, tmp_path):
    config = tmp_path / "ptq.yaml"
    config.write_text("# post-training quantization\nquantizers:\n  ptq:\n" + extra
                      + "    class: PostTrainLinearQuantizer\n")
    with pytest.raises(ScheduleError) as caught:
        check_quantization_args(_Net(), _parse("--qe-config-file", str(config)))
    assert (caught.value.path, caught.value.line) == (yaml_path, line), str(caught.value)


@pytest.mark.parametrize("setting", [{"bits_accum": 0}, {"mode": "symetric"}, {"clip_n_stds": -2.0},
                                     {"overrides": {"fc": {"clip_acts": "median"}}}])
def test_config_file_and_python_api_raise_the_same_error(setting, tmp_path):
    with pytest.raises(ArgumentError) as python:
        PostTrainLinearQuantizer(_Net(), **setting)
    config = tmp_path / "ptq.yaml"
    config.write_text(yaml.safe_dump({"quantizers": {"ptq": {"class": "PostTrainLinearQuantizer", **setting}}}))
    with pytest.raises(ScheduleError) as from_yaml:
        check_quantization_args(_Net(), _parse("--qe-config-file", str(config)))
    err = python.value
    assert str(err) in str(from_yaml.value)
    assert from_yaml.value.path == ".".join(["quantizers", "ptq", err.argument, *err.location])


FLAG_ERRORS = {
    "missing_config_file": (["--qe-config-file", "nowhere.yaml"], InputFileError, "--qe-config-file"),
    "missing_stats_file": (["--qe-stats-file", "nowhere.yaml"], InputFileError, "--qe-stats-file"),
    "n_std_without_n_stds": (["--qe-clip-acts", "n_std"], ArgumentError, "--qe-clip-n-stds"),
    "lapq_with_dynamic_ranges": (["--qe-lapq", "--qe-dynamic"], ArgumentError, "--qe-dynamic"),
    "lapq_unknown_method": (["--qe-lapq", "--lapq-method", "Powel"], ArgumentError, "--lapq-method Powel"),
    "lapq_unknown_init_method": (["--qe-lapq", "--lapq-init-method", "golden"], ArgumentError,
                                 "--lapq-init-method golden"),
}


@pytest.mark.parametrize("argv, error, fragment", FLAG_ERRORS.values(), ids=FLAG_ERRORS.keys())
def test_flag_errors_name_the_flag_before_calibration(argv, error, fragment, tmp_path):
    with pytest.raises(error, match=fragment):
        _quantize(_Net(), *argv, tmp_path=tmp_path)


def test_valid_settings_pass_the_check_without_changing_the_model(tmp_path):
    model = _Net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    check_quantization_args(model, _parse("--qe-no-quant-layers", "fc", "--qe-fp8", "per_row", "--qe-lapq",
                                          "--lapq-init-method", "bounded"))
    assert [type(m) for m in model.modules()] == [type(m) for m in _Net().modules()]
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_a_model_another_quantizer_prepared_is_refused_by_name():
    from distiller.quantization import PACTQuantizer
    model = _Net()
    PACTQuantizer(model, torch.optim.SGD(model.parameters(), lr=0.1), bits_activations=8,
                  bits_weights=4).prepare_model()
    with pytest.raises(ArgumentError, match="--quantize-eval: the model was prepared by PACTQuantizer"):
        check_quantization_args(model, _parse("--quantize-eval"))


def test_a_qat_model_takes_deployment_flags_only(loader, tmp_path):
    from distiller.quantization import QuantAwareTrainRangeLinearQuantizer
    model = _Net()
    QuantAwareTrainRangeLinearQuantizer(model, torch.optim.SGD(model.parameters(), lr=0.1), bits_activations=8,
                                        bits_weights=8, mode="asym_u").prepare_model()
    model(torch.randn(8, 3, 6, 6))  # the fake quantizations track a range in training mode
    check_quantization_args(model, _parse("--quantize-eval", "--qe-export-onnx", "--qe-pytorch-backend", "x86"))
    stats_file = tmp_path / "stats" / "s.yaml"
    stats_file.parent.mkdir()
    stats_file.write_text("{}")
    with pytest.raises(ArgumentError, match="--qe-stats-file configures post-training quantization"):
        check_quantization_args(model, _parse("--quantize-eval", "--qe-stats-file", str(stats_file)))
    stats_file.unlink()
    stats_file.parent.rmdir()
    expected = _evaluate(model, loader)
    results = quantize_and_evaluate(model, _parse("--quantize-eval"), loader, _evaluate, loader[0][0], str(tmp_path))
    assert results["quantized"] == expected and results["checkpoint"] is None
    assert results["trained_with"] == "QuantAwareTrainRangeLinearQuantizer"
    assert list(tmp_path.iterdir()) == []  # no statistics, no second checkpoint
