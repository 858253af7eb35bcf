"""The library's classifier engine, ``distiller.apputils.image_classifier``, used as Distiller's users use it:
``ClassifierCompressor`` from their own script (and subclassed), and the module's Distiller functions.
Also the post-training-quantization sample app, a thin client of the engine."""
import json
import logging
import os
import sys

import pytest
import torch

from distiller.apputils import image_classifier as classifier
from distiller.apputils.app_runner import run_cli
from distiller.apputils.classifier_loop import evaluate
from distiller.errors import ArgumentError, UserError
from distiller.models import create_model

FAST = ["-a", "simplenet_cifar", "-b", "64", "--etrs", "0.2", "--etes", "0.3", "--det", "--seed", "2", "-p", "4"]
PTQ_APP = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "quantization", "post_train_quant")

pytestmark = pytest.mark.slow


def parse(*argv):
    return classifier.init_classifier_compression_arg_parser(include_ptq_lapq_args=True).parse_args(
        [str(a) for a in argv])


def test_compressor_trains_checkpoints_and_tests_like_distillers(tmp_path):
    args = parse(*FAST, "--epochs", 2, "-o", tmp_path, "--etrs", 1, "-b", 32)
    with classifier.ClassifierCompressor(args) as app:
        history = app.run_training_loop()
        top1, top5, loss = app.test()
        assert [h["epoch"] for h in history] == [0, 1]
        assert os.path.isfile(os.path.join(app.logdir, "checkpoint.pth.tar"))
        assert os.path.isfile(os.path.join(app.logdir, "best.pth.tar"))
        assert os.path.dirname(app.logdir) == str(tmp_path)
        direct = evaluate(app.model, app.criterion, app.test_loader)
        assert (top1, top5, loss) == pytest.approx((direct["Top1"], direct["Top5"], direct["Loss"]))
        assert top1 > 30, "two epochs on digits must learn something (chance is 10%)"
        assert app.ending_epoch == 2 and app.start_epoch == 0
        assert app.compression_scheduler.model is app.model


def test_a_subclass_can_replace_one_step_of_the_loop(tmp_path):
    """Distiller's apps subclass ClassifierCompressor and override single steps."""
    calls = []

    class CountingCompressor(classifier.ClassifierCompressor):
        def train_one_epoch(self, epoch, verbose=True):
            calls.append(epoch)
            return super().train_one_epoch(epoch, verbose)

    with CountingCompressor(parse(*FAST, "--epochs", 2, "-o", tmp_path)) as app:
        app.run_training_loop()
    assert calls == [0, 1]


def test_bad_input_fails_before_the_run_directory_exists(tmp_path):
    with pytest.raises(UserError, match="resnet200_cifar"):
        classifier.ClassifierCompressor(parse("-a", "resnet200_cifar", "-o", tmp_path))
    assert os.listdir(tmp_path) == []


def test_load_data_returns_the_requested_loaders_in_distillers_order():
    args = parse(*FAST)
    train_loader, val_loader, test_loader = classifier.load_data(args)
    assert len(train_loader.sampler) < len(train_loader.dataset)  # --etrs
    test_only = classifier.load_data(args, load_train=False, load_val=False)
    assert isinstance(test_only, torch.utils.data.DataLoader)
    assert len(test_only.sampler) == len(test_loader.sampler)
    assert len(classifier.load_data(args, load_test=False)) == 2
    with pytest.raises(ArgumentError, match="request at least one loader"):
        classifier.load_data(args, load_train=False, load_val=False, load_test=False)


def test_distillers_train_validate_test_functions(caplog):
    args = parse(*FAST, "--confusion")
    train_loader, val_loader, test_loader = classifier.load_data(args)
    model = create_model(False, "digits", "simplenet_cifar", parallel=False)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = classifier.validate(val_loader, model, criterion, [], args)
    for epoch in range(2):
        top1, top5, loss = classifier.train(train_loader, model, criterion, optimizer, epoch, None, [], args)
        assert 0 <= top1 <= top5 <= 100 and loss > 0
    after = classifier.validate(val_loader, model, criterion, [], args)
    assert after[2] < before[2], "two epochs of training must lower the validation loss"
    with caplog.at_level(logging.INFO):
        scores = classifier.test(test_loader, model, criterion, args=args)
    assert "Confusion matrix (test set)" in caplog.text
    direct = evaluate(model, criterion, test_loader)
    assert scores == pytest.approx((direct["Top1"], direct["Top5"], direct["Loss"]))


def test_evaluate_model_quantizes_with_quantize_eval(tmp_path, filter_pruned_checkpoint):
    args = parse("-a", "simplenet_cifar", "-b", "128", "--etes", "0.3", "-e", "--quantize-eval",
                 "--resume-from", filter_pruned_checkpoint)
    test_loader = classifier.load_data(args, load_train=False, load_val=False)
    model = create_model(False, "digits", "simplenet_cifar", parallel=False)
    scores = classifier.evaluate_model(test_loader, model, torch.nn.CrossEntropyLoss(), [], args=args,
                                       save_dir=str(tmp_path))
    assert len(scores) == 3
    assert "RangeLinearQuantParamLayerWrapper" in {type(m).__name__ for m in model.modules()}
    assert os.path.isfile(tmp_path / "quantized_checkpoint.pth.tar")


@pytest.fixture
def ptq_app():
    sys.path.insert(0, os.path.abspath(PTQ_APP))
    try:
        import ptq_classifier
        yield ptq_classifier
    finally:
        sys.path.remove(os.path.abspath(PTQ_APP))


def test_ptq_app_reports_float_and_quantized_scores(ptq_app, filter_pruned_checkpoint, tmp_path):
    status = run_cli(ptq_app.main, ptq_app.get_args_parser(),
                     ["--resume-from", filter_pruned_checkpoint, "-b", "128", "--etes", "0.3", "-o", str(tmp_path),
                      "--qe-mode-acts", "asym_u"])
    assert status == 0
    (run_dir,) = os.listdir(tmp_path)
    assert run_dir.startswith("ptq___")
    with open(tmp_path / run_dir / "results.json") as f:
        results = json.load(f)
    assert results["arch"] == "simplenet_cifar"
    assert results["top1_drop"] == pytest.approx(results["float"]["Top1"] - results["quantized"]["Top1"])
    assert os.path.isfile(results["checkpoint"])


def test_ptq_app_needs_a_checkpoint(ptq_app, tmp_path, capsys):
    assert run_cli(ptq_app.main, ptq_app.get_args_parser(), ["-o", str(tmp_path)]) == 2
    assert "--resume-from PATH is required" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_activation_stats_of_each_requested_phase_are_saved(tmp_path):
    import pandas as pd
    args = parse(*FAST, "--epochs", 1, "-o", tmp_path, "--act-stats", "valid", "test")
    with classifier.ClassifierCompressor(args) as app:
        assert app.activations_collectors["train"] == {}
        app.run_training_loop()
        app.test()
    for phase in ("valid", "test"):
        sheet = pd.read_excel(os.path.join(app.logdir, "activation_stats", phase, "sparsity_ofm.xlsx"))
        relus = [name for name, m in app.model.named_modules() if isinstance(m, torch.nn.ReLU)]
        assert set(relus) <= set(sheet.astype(str).to_string().split()), sheet
    assert not os.path.exists(os.path.join(app.logdir, "activation_stats", "train"))
    assert all(not collector._handles for collectors in app.activations_collectors.values()
               for collector in collectors.values()), "collectors must be stopped after each phase"


def test_activation_histograms_mode_writes_the_histograms(run_classifier, tmp_path):
    result = run_classifier("-a", "simplenet_cifar", "-b", "128", "--etes", "0.3", "-o", tmp_path, "--act-hist", "0.5")
    assert result.status == 0, result.stderr
    histograms = torch.load(os.path.join(result.run_dir, "acts_histograms.pt"), weights_only=True)
    first = next(iter(histograms.values()))
    assert int(first["output"]["hist"].sum()) == int(first["output"]["total_numel"]) > 0


def test_acts_quant_stats_collection_needs_a_directory_to_save(filter_pruned_checkpoint, tmp_path):
    args = parse("-a", "simplenet_cifar", "-b", "128", "--etes", "0.2")
    model = create_model(False, "digits", "simplenet_cifar", parallel=False)
    with pytest.raises(ArgumentError, match="save_dir"):
        classifier.acts_quant_stats_collection(model, torch.nn.CrossEntropyLoss(), [], args, save_to_file=True)
    stats = classifier.acts_quant_stats_collection(model, torch.nn.CrossEntropyLoss(), [], args, save_to_file=True,
                                                   save_dir=str(tmp_path))
    assert stats["conv1"]["output"]["max"] >= stats["conv1"]["output"]["min"]
    assert os.path.isfile(tmp_path / "acts_quantization_stats.yaml")
