"""--quantize-eval / --qe-* / --lapq-* flags and the quantized-evaluation driver."""
import argparse

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import distiller
from distiller.cli.quantization import add_post_train_quant_args, quantize_and_evaluate, quantizer_from_args
from distiller.errors import ScheduleError
from distiller.quantization import LinearQuantMode, RangeLinearQuantEltwiseAddWrapper


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
    assert quantizer.module_qbits_map["conv1"].wts is None and quantizer.module_overrides_map["fc"]["clip_acts"] == "NONE"
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
