"""compress_classifier.py -e --quantize-eval --qe-compile / --qe-convert-pytorch on digits: the simulated model is
lowered to PT2E, compiled to int8 by inductor, evaluated, and its agreement with the simulated model (and with
the ONNX Runtime QDQ model) is logged as a table; bad combinations are refused before anything runs."""
import os
import re

import pytest

TRAIN = ["-a", "simplenet_cifar", "-b", "32", "--lr", "0.02", "--epochs", "6", "--det", "--seed", "3", "-p", "1000"]
EVALUATE = ["-a", "simplenet_cifar", "-b", "128", "--etes", "1", "--det", "--seed", "3", "-e", "--quantize-eval"]


@pytest.fixture(scope="module")
def trained(run_classifier, tmp_path_factory):
    """A simplenet_cifar checkpoint trained on digits for six epochs (a few seconds; confident logits)."""
    result = run_classifier(*TRAIN, "-o", tmp_path_factory.mktemp("train"))
    assert result.status == 0, result.stderr
    assert result.summary["top1"] > 90
    return os.path.join(result.run_dir, "checkpoint.pth.tar")


def _log(result):
    with open(os.path.join(result.run_dir, os.path.basename(result.run_dir) + ".log")) as f:
        return f.read()


@pytest.mark.slow  # trains for six epochs, compiles with inductor
def test_qe_compile_agrees_with_the_simulated_and_onnx_models(run_classifier, trained, tmp_path):
    result = run_classifier(*EVALUATE, "--qe-compile", "--qe-export-onnx", "--resume-from", trained, "-o", tmp_path)
    assert result.status == 0, result.stderr
    quantized = result.summary["quantized"]
    parity = quantized["parity"]
    assert parity["samples"] == 360  # the whole digits test set
    for form in ("pytorch_int8", "onnxruntime", "pytorch_int8_vs_onnxruntime"):
        assert parity[form]["top1_agreement"] >= 0.99, parity
    assert abs(quantized["pytorch_int8"]["Top1"] - quantized["top1"]) <= 1.0
    log = _log(result)
    assert "top-1 agreement" in log and "compiled int8 (PyTorch)  simulated model" in log
    # every conv/linear layer of simplenet_cifar (2 + 3) runs as an int8 kernel, with or without torchao
    assert re.search(r"Compiled int8 model \((torchao|onednn) fusion, 5 of 5 conv/linear layers int8\)", log), log
    # the result line names the float model's top-1 as such, and the quantized models' beside it
    expected = (f"Result: test top-1 {result.summary['top1']:.2f}% top-5 {result.summary['top5']:.2f}% (float model); "
                f"quantized top-1 {quantized['top1']:.2f}%, compiled int8 {quantized['pytorch_int8']['Top1']:.2f}%, "
                f"ONNX Runtime {quantized['onnxruntime']['Top1']:.2f}% | ")
    assert expected in log, log[-2000:]


@pytest.mark.slow
def test_qe_convert_pytorch_routes_to_the_compiled_model(run_classifier, trained, tmp_path):
    result = run_classifier(*EVALUATE, "--qe-convert-pytorch", "--qema", "asym_u", "--qe-per-channel",
                            "--resume-from", trained, "-o", tmp_path)
    assert result.status == 0, result.stderr
    parity = result.summary["quantized"]["parity"]
    assert parity["pytorch_int8"]["top1_agreement"] >= 0.99, parity
    assert "onnxruntime" not in parity
    assert "Compiled int8 model (" in _log(result)


@pytest.mark.parametrize("flags, message", [
    (["--qe-compile", "--qe-dynamic"], "--qe-compile lowers to int8 kernels with static activation ranges"),
    (["--qe-convert-pytorch", "--qe-pytorch-backend", "qnnpack"], "--qe-pytorch-backend qnnpack"),
], ids=["dynamic", "qnnpack"])
def test_bad_compile_flags_are_refused_at_setup(run_classifier, tmp_path, flags, message):
    out_dir = tmp_path / "runs"
    result = run_classifier("-a", "simplenet_cifar", "-e", "--quantize-eval", *flags, "-o", out_dir)
    assert result.status == 2, result.stderr
    assert "Traceback" not in result.stderr and message in result.stderr, result.stderr
    assert not out_dir.exists()


def test_missing_cpp_compiler_is_refused_at_setup(run_classifier, tmp_path):
    from torch._inductor import config
    out_dir = tmp_path / "runs"
    with config.patch({"cpp.cxx": ("distiller-no-such-compiler++",)}):
        result = run_classifier("-a", "simplenet_cifar", "-e", "--quantize-eval", "--qe-compile", "-o", out_dir)
    assert result.status == 2, result.stderr
    assert "needs a C++ compiler" in result.stderr and "distiller-no-such-compiler++" in result.stderr
    assert not out_dir.exists()


QAT_SCHEDULE = """\
version: 1
quantizers:
  qat:
    class: QuantAwareTrainRangeLinearQuantizer
    bits_activations: 8
    bits_weights: 8
    mode: {activations: ASYMMETRIC_UNSIGNED, weights: SYMMETRIC}
    per_channel_wts: true
    ema_decay: 0.9
policies:
  - quantizer: {instance_name: qat}
    starting_epoch: 0
    ending_epoch: 2
    frequency: 1
"""


@pytest.fixture(scope="module")
def qat_trained(run_classifier, trained, tmp_path_factory):
    """The float checkpoint fine-tuned one epoch with 8-bit range-linear quantization-aware training."""
    directory = tmp_path_factory.mktemp("qat")
    schedule = directory / "qat.yaml"
    schedule.write_text(QAT_SCHEDULE)
    result = run_classifier("-a", "simplenet_cifar", "-b", "32", "--lr", "0.002", "--epochs", "1", "--det",
                            "--resume-from", trained, "--reset-optimizer", "--compress", schedule, "-o", directory)
    assert result.status == 0, result.stderr
    return os.path.join(result.run_dir, "checkpoint.pth.tar")


@pytest.mark.slow  # trains, compiles with inductor
def test_a_qat_checkpoint_is_evaluated_and_deployed_as_trained(run_classifier, qat_trained, tmp_path):
    """--quantize-eval on a quantization-aware-trained checkpoint used to crash (the post-training quantizer
    refused the prepared model after calibrating); now the QAT model is the quantized model, and it deploys."""
    result = run_classifier("-a", "simplenet_cifar", "-b", "128", "--det", "-e", "--quantize-eval", "--qe-compile",
                            "--qe-export-onnx", "--resume-from", qat_trained, "-o", tmp_path)
    assert result.status == 0, result.stderr
    quantized = result.summary["quantized"]
    assert quantized["trained_with"] == "QuantAwareTrainRangeLinearQuantizer" and quantized["checkpoint"] is None
    assert quantized["top1"] == result.summary["top1"]  # the loaded model is the quantized one
    for form in ("pytorch_int8", "onnxruntime"):
        assert quantized["parity"][form]["top1_agreement"] >= 0.99, quantized["parity"]
    log = _log(result)
    assert "evaluating it as trained (no post-training quantization" in log
    assert log.count("Lowering a quantization-aware-trained model") == 1  # converted once for both deployments
    assert "(as trained with QuantAwareTrainRangeLinearQuantizer); quantized top-1" in log
    assert not os.path.exists(os.path.join(result.run_dir, "acts_quantization_stats.yaml"))  # nothing calibrated


@pytest.mark.slow
def test_post_training_flags_for_a_qat_checkpoint_are_refused(run_classifier, qat_trained, tmp_path):
    out_dir = tmp_path / "runs"
    result = run_classifier("-a", "simplenet_cifar", "-e", "--quantize-eval", "--qe-per-channel", "--qe-bits-acts",
                            "6", "--resume-from", qat_trained, "-o", out_dir)
    assert result.status == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert ("--qe-bits-acts configures post-training quantization, but the model was trained with "
            "QuantAwareTrainRangeLinearQuantizer") in result.stderr and "drop --qe-bits-acts, --qe-per-channel" \
        in result.stderr, result.stderr
    assert not out_dir.exists()
