"""Post-training quantization through compress_classifier.py on the embedded digits dataset: every LAPQ init
mode runs end to end, and a bad quantization setting stops the run before any data is read."""
import glob
import os

import pytest

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
    assert 0 <= quantized["quantized"]["Top1"] <= 100 and os.path.isfile(quantized["checkpoint"])
    assert f"LAPQ ({init_mode} initial ranges): loss" in _run_log(result.run_dir)
