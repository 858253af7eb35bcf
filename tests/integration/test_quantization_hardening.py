"""Post-training quantization through compress_classifier.py on the embedded digits dataset: every LAPQ init
mode runs end to end, a bad quantization setting stops the run before any data is read, and a quantized
model reports the MACs of the float model."""
import glob
import os

import pytest
import torch

from distiller.quantization.lapq import LAPQ_INIT_MODES

pytestmark = pytest.mark.slow

# An untrained simplenet_cifar evaluated on 10% of the digits test set (one batch): quantization only.
EVALUATE = ["-a", "simplenet_cifar", "-b", "64", "--etes", "0.1", "--det", "--seed", "3", "-e", "--quantize-eval"]


def _run_log(run_dir):
    (path,) = glob.glob(os.path.join(run_dir, "*.log"))
    with open(path) as stream:
        return stream.read()


@pytest.mark.parametrize("init_mode", LAPQ_INIT_MODES)
def test_lapq_runs_with_every_init_mode(run_classifier, tmp_path, init_mode):
    result = run_classifier(*EVALUATE, "--qe-lapq", "--lapq-init-mode", init_mode.lower(), "--lapq-maxfev", 3,
                            "--lapq-eval-size", 0.5, "-o", tmp_path)
    assert result.status == 0, result.stderr
    quantized = result.summary["quantized"]
    assert 0 <= quantized["top1"] <= 100 and os.path.isfile(quantized["checkpoint"])
    assert f"LAPQ ({init_mode} initial ranges): loss" in _run_log(result.run_dir)


CONFIG_WITH_TYPO = """quantizers:
  post_train_quantizer:
    class: PostTrainLinearQuantizer
    bits_activations: 8
    overrides:
      fcc: {bits_weights: null}
"""


@pytest.fixture
def no_data_read(monkeypatch):
    """Fails the test if a batch is read from any data loader."""
    def fail(self):
        pytest.fail("a data loader was iterated before the quantization settings were validated")
    monkeypatch.setattr(torch.utils.data.DataLoader, "__iter__", fail)


def _assert_stopped_before_writing(result, out_dir, *fragments):
    assert result.status == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    written = [p for p in glob.glob(os.path.join(out_dir, "**", "*"), recursive=True)
               if os.path.isfile(p) and not p.endswith(".log")]
    assert written == [] and result.summary is None


def test_config_file_typo_stops_the_run_before_any_data_is_read(run_classifier, tmp_path, no_data_read):
    config = tmp_path / "ptq.yaml"
    config.write_text(CONFIG_WITH_TYPO)
    out_dir = tmp_path / "runs"
    result = run_classifier(*EVALUATE, "--qe-config-file", config, "-o", out_dir)
    _assert_stopped_before_writing(result, out_dir, f"{config}, at 'quantizers.post_train_quantizer.overrides.fcc', "
                                                    "line 6: 'fcc' matches no module", "did you mean 'fc")


def test_no_quant_layers_typo_names_the_flag_before_any_data_is_read(run_classifier, tmp_path, no_data_read):
    out_dir = tmp_path / "runs"
    result = run_classifier(*EVALUATE, "--qe-no-quant-layers", "conv1", "fcc", "-o", out_dir)
    _assert_stopped_before_writing(result, out_dir, "--qe-no-quant-layers fcc: 'fcc' matches no module")


def test_quantized_checkpoint_reports_the_float_macs(run_classifier, tmp_path):
    quantized = run_classifier(*EVALUATE, "--qe-per-channel", "-o", tmp_path, "-n", "quantize")
    assert quantized.status == 0, quantized.stderr
    reloaded = run_classifier(*EVALUATE[:-1], "--resume-from", quantized.summary["quantized"]["checkpoint"],
                              "-o", tmp_path, "-n", "reload")
    assert reloaded.status == 0, reloaded.stderr
    assert reloaded.summary["macs"] == quantized.summary["macs"] > 0  # the float model's, measured before PTQ
    # the reloaded model is the quantized one: its smallest 8-bit weights are integer zeros
    assert reloaded.summary["params_nonzero"] < quantized.summary["params_nonzero"] == quantized.summary["params_total"]
