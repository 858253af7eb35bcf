"""Bad input to compress_classifier.py: one line on stderr, exit status 2, no traceback, nothing written.
A bug (any exception outside the user-error family) keeps its traceback and exits with status 1."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from distiller.apputils import save_checkpoint
from distiller.models import create_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def simplenet_checkpoint(tmp_path_factory):
    """An untrained simplenet_cifar checkpoint."""
    directory = tmp_path_factory.mktemp("checkpoint")
    model = create_model(False, "digits", "simplenet_cifar", device_ids=-1)
    return save_checkpoint(0, "simplenet_cifar", model, dir=str(directory))


def assert_user_error(result, *fragments):
    assert result.status == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert result.run_dir is None, "a run directory was created for a run refused at setup"


def test_unknown_arch_lists_close_matches(run_classifier, tmp_path):
    assert_user_error(run_classifier("-a", "resnet20_cifr", "-o", tmp_path), "resnet20_cifr", "'resnet20_cifar'")


def test_arch_of_another_dataset(run_classifier, tmp_path):
    assert_user_error(run_classifier("-a", "simplenet_mnist", "-o", tmp_path), "simplenet_mnist", "digits")


def test_missing_dataset_dir(run_classifier, tmp_path):
    missing = tmp_path / "no_such_dir"
    assert_user_error(run_classifier("--dataset", "cifar10", missing, "-o", tmp_path), str(missing))


def test_dataset_not_inferable_from_dir_or_arch(run_classifier, tmp_path):
    assert_user_error(run_classifier("-a", "my_arch", tmp_path, "-o", tmp_path), "my_arch")
    assert_user_error(run_classifier(tmp_path / "data", "-o", tmp_path), "--dataset")


def test_dataset_dir_given_for_embedded_digits(run_classifier, tmp_path):
    assert_user_error(run_classifier("--dataset", "digits", tmp_path, "-o", tmp_path), "takes no DATASET_DIR")


def test_resume_from_checkpoint_of_another_arch_names_both(run_classifier, simplenet_checkpoint, tmp_path):
    result = run_classifier("-a", "resnet20_cifar", "--resume-from", simplenet_checkpoint, "-o", tmp_path)
    assert_user_error(result, "'simplenet_cifar'", "'resnet20_cifar'")


def test_missing_schedule_file(run_classifier, tmp_path):
    missing = tmp_path / "missing.yaml"
    assert_user_error(run_classifier("-a", "simplenet_cifar", "--compress", missing, "-o", tmp_path), str(missing))


def test_schedule_error_names_the_yaml_path(run_classifier, tmp_path):
    schedule = tmp_path / "bad.yaml"
    schedule.write_text("version: 1\npruners:\n  p:\n    class: AutomatedGradualPruner\n    initial_sparsity: 0.1\n"
                        "    final_sparsity: 0.5\n    weights: [conv1.weight, conv9.weight]\n"
                        "policies:\n  - pruner: {instance_name: p}\n    starting_epoch: 0\n    ending_epoch: 2\n")
    result = run_classifier("-a", "simplenet_cifar", "--compress", schedule, "-o", tmp_path)
    assert_user_error(result, "bad.yaml", "conv9.weight", "pruners.p.weights[1]")


@pytest.mark.parametrize("content", [b"\x00garbage, not a checkpoint" * 10, None], ids=["corrupt", "foreign"])
def test_corrupt_or_foreign_checkpoint(run_classifier, tmp_path, content):
    path = tmp_path / "bad.pth.tar"
    if content is None:
        torch.save({"model": {"w": torch.zeros(2)}}, path)
    else:
        path.write_bytes(content)
    assert_user_error(run_classifier("--resume-from", path, "-o", tmp_path), str(path))


def test_missing_checkpoint(run_classifier, tmp_path):
    assert_user_error(run_classifier("--exp-load-weights-from", tmp_path / "none.pth.tar", "-o", tmp_path),
                      "none.pth.tar")


def test_conflicting_flags(run_classifier, tmp_path):
    assert_user_error(run_classifier("-e", "--compress", "x.yaml", "-o", tmp_path), "--compress", "--evaluate")
    assert_user_error(run_classifier("--reset-optimizer", "-o", tmp_path), "--resume-from")
    assert_user_error(run_classifier("--quantize-eval", "-o", tmp_path), "--evaluate")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_gpus_without_cuda(run_classifier, tmp_path):
    assert_user_error(run_classifier("-a", "simplenet_cifar", "--gpus", "0", "-o", tmp_path), "CUDA")


def test_verbose_shows_the_traceback(run_classifier, tmp_path):
    result = run_classifier("-a", "resnet20_cifr", "-v", "-o", tmp_path)
    assert result.status == 2 and "Traceback" in result.stderr


def test_process_exit_status_and_message(tmp_path):
    """The script itself (not only main()) exits with status 2 and a one-line message."""
    script = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "classifier_compression",
                          "compress_classifier.py")
    process = subprocess.run([sys.executable, script, "-a", "resnet20_cifr", "-o", str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1].startswith("compress_classifier.py: error: unknown architecture")
    assert "Traceback" not in process.stderr


def test_refused_run_writes_nothing(run_classifier, tmp_path):
    out_dir = tmp_path / "runs"
    assert_user_error(run_classifier("-a", "resnet20_cifr", "-o", out_dir), "resnet20_cifr")
    assert not out_dir.exists()


@pytest.mark.parametrize("text", ["", "version: 1\n", "pruners:\n  p: {class: AutomatedGradualPruner, "
                                  "initial_sparsity: 0.1, final_sparsity: 0.5, weights: [conv1.weight]}\n"],
                         ids=["empty", "version-only", "no-policies"])
def test_schedule_that_does_nothing_is_refused(run_classifier, tmp_path, text):
    schedule = tmp_path / "nothing.yaml"
    schedule.write_text(text)
    out_dir = tmp_path / "runs"
    result = run_classifier("-a", "simplenet_cifar", "--compress", schedule, "-o", out_dir)
    assert_user_error(result, "nothing.yaml", "compress nothing", "policies")
    assert not out_dir.exists()


def test_two_quantizers_are_refused_naming_both(run_classifier, tmp_path):
    schedule = tmp_path / "two.yaml"
    schedule.write_text(textwrap.dedent("""\
        quantizers:
          qat: {class: QuantAwareTrainRangeLinearQuantizer, bits_activations: 8, bits_weights: 8}
          pact: {class: PACTQuantizer, bits_activations: 4, bits_weights: 4}
        policies:
          - quantizer: {instance_name: qat}
            starting_epoch: 0
            ending_epoch: 2
        """))
    result = run_classifier("-a", "simplenet_cifar", "--compress", schedule, "-o", tmp_path / "runs")
    assert_user_error(result, "two.yaml", "'qat'", "'pact'", "keep one of them")


@pytest.fixture
def app_module(classifier_app):
    """The engine's setup module, where the app's experiment is built."""
    from distiller.apputils import classifier_setup
    return classifier_setup


@pytest.mark.parametrize("bug", [ValueError("boom"), RuntimeError("boom"), OSError("boom"),
                                 torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")],
                         ids=["ValueError", "RuntimeError", "OSError", "OutOfMemoryError"])
def test_a_library_failure_during_setup_is_not_reported_as_a_user_error(run_classifier, app_module, monkeypatch,
                                                                        tmp_path, bug):
    def failing_load_data(*args, **kwargs):
        raise bug
    monkeypatch.setattr(app_module, "load_data", failing_load_data)
    with pytest.raises(type(bug)) as info:
        run_classifier("-a", "simplenet_cifar", "-o", tmp_path / "runs")
    assert info.value is bug


def test_a_library_bug_exits_with_status_1_and_its_traceback(tmp_path):
    """In a real process, a bug on the setup path prints its traceback and exits with status 1."""
    app_dir = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "classifier_compression")
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""\
        import runpy, sys
        sys.path.insert(0, {app_dir!r})
        from distiller.apputils import classifier_setup

        def create_model(*args, **kwargs):
            raise ValueError("boom: a bug inside the library")

        classifier_setup.create_model = create_model
        sys.argv = ["compress_classifier.py", "-a", "simplenet_cifar", "-o", {str(tmp_path / "runs")!r}]
        runpy.run_path({os.path.join(app_dir, "compress_classifier.py")!r}, run_name="__main__")
        """))
    process = subprocess.run([sys.executable, str(driver)], capture_output=True, text=True, timeout=120)
    assert process.returncode == 1, process.stderr
    assert "Traceback (most recent call last)" in process.stderr
    assert process.stderr.strip().splitlines()[-1] == "ValueError: boom: a bug inside the library"
    assert "error: boom" not in process.stderr



def test_setup_is_logged_into_the_run_log_once_the_run_directory_exists(run_classifier, tmp_path):
    result = run_classifier("-a", "simplenet_cifar", "--epochs", "0", "--etes", "0.2", "-b", "128", "--seed", "3",
                            "-o", tmp_path)
    assert result.status == 0 and result.summary is not None, result.stderr
    log_files = [name for name in os.listdir(result.run_dir) if name.endswith(".log")]
    with open(os.path.join(result.run_dir, log_files[0])) as f:
        log = f.read()
    assert "dataset digits, architecture simplenet_cifar, seed 3" in log
    assert log.index("Log file for this run") < log.index("dataset digits, architecture simplenet_cifar")


@pytest.mark.parametrize("flags", [["--export-onnx"], ["-e", "--quantize-eval", "--qe-export-onnx"]],
                         ids=["export-onnx", "qe-export-onnx"])
def test_onnx_flags_without_the_onnx_extra(run_classifier, simplenet_checkpoint, monkeypatch, tmp_path, flags):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    out_dir = tmp_path / "runs"
    result = run_classifier("--resume-from", simplenet_checkpoint, *flags, "-o", out_dir)
    assert_user_error(result, flags[-1], "'onnxscript'", "pip install 'distiller[onnx]'")
    assert not out_dir.exists()


def test_schedule_that_starts_after_the_last_epoch_is_refused(run_classifier, tmp_path):
    schedule = tmp_path / "late.yaml"
    schedule.write_text(textwrap.dedent("""\
        pruners:
          p: {class: AutomatedGradualPruner, initial_sparsity: 0.1, final_sparsity: 0.5, weights: [conv1.weight]}
        policies:
          - pruner: {instance_name: p}
            starting_epoch: 5
            ending_epoch: 9
        """))
    result = run_classifier("-a", "simplenet_cifar", "--epochs", "3", "--compress", schedule, "-o", tmp_path / "runs")
    assert_user_error(result, "first policy runs at epoch 5", "--epochs is 3", "compress nothing")


def test_output_directory_that_cannot_hold_a_run(run_classifier, tmp_path):
    not_a_directory = tmp_path / "file.txt"
    not_a_directory.write_text("")
    result = run_classifier("-a", "simplenet_cifar", "--epochs", "1", "-o", not_a_directory / "runs")
    assert_user_error(result, "--out-dir", "cannot create the run directory", "writable directory")
