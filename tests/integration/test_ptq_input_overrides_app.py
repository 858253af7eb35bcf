"""compress_classifier.py -e --quantize-eval --qe-config-file with Distiller's per-layer input settings on digits:
the inputs are quantized as the file says, and the quantized checkpoint reloads with the same results."""
import os

import pytest
import torch
import yaml

from distiller.apputils import save_checkpoint
from distiller.models import create_model
from distiller.quantization.q_utils import linear_quant_params_from_min_max

pytestmark = pytest.mark.slow

# simplenet_cifar evaluated on 10% of the digits test set (one batch)
EVALUATE = ["-a", "simplenet_cifar", "-b", "64", "--etes", "0.1", "--det", "--seed", "3", "-e"]
CONFIG = """quantizers:
  post_train_quantizer:
    class: PostTrainLinearQuantizer
    bits_activations: 8
    bits_parameters: 8
    overrides:
      conv1:
        input_overrides:
          0: {bits_activations: 4}
      fc1:
        clip_acts: AVG
        input_overrides:
          0: {from_output: true}
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model(False, "digits", "simplenet_cifar", device_ids=-1)
    return save_checkpoint(0, "simplenet_cifar", model, dir=str(tmp_path_factory.mktemp("float")))


def test_input_overrides_quantize_through_the_app_and_reload(run_classifier, checkpoint, tmp_path):
    config = tmp_path / "ptq.yaml"
    config.write_text(CONFIG)
    quantized = run_classifier(*EVALUATE, "--quantize-eval", "--qe-config-file", config, "--resume-from", checkpoint,
                               "-o", tmp_path, "-n", "quantize")
    assert quantized.status == 0, quantized.stderr
    path = quantized.summary["quantized"]["checkpoint"]
    weights = torch.load(path, weights_only=True)["state_dict"]
    with open(os.path.join(quantized.run_dir, "acts_quantization_stats.yaml")) as stream:
        stats = yaml.safe_load(stream)
    model_input = stats["conv1"]["inputs"][0]
    scale, _ = linear_quant_params_from_min_max(4, "SYMMETRIC", torch.tensor(model_input["min"]),
                                                torch.tensor(model_input["max"]))
    assert weights["conv1.input_scales"][0].item() == pytest.approx(scale.item())  # 4 bits for the images
    # fc1's input: its own statistics with its output's AVG clipping, not conv2's output parameters
    assert weights["fc1.input_scales"][0] > weights["conv2.output_scale"]
    reloaded = run_classifier(*EVALUATE, "--resume-from", path, "-o", tmp_path, "-n", "reload")
    assert reloaded.status == 0, reloaded.stderr
    assert reloaded.summary["top1"] == quantized.summary["quantized"]["top1"]
    assert reloaded.summary["loss"] == quantized.summary["quantized"]["loss"]
