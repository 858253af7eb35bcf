#!/usr/bin/env python3
"""Train, compress and evaluate an image classifier with a distiller compression schedule.

AGP pruning of ResNet-20 on the embedded ``digits`` dataset (no download), from the repository root::

    python examples/classifier_compression/compress_classifier.py -a resnet20_cifar --epochs 20 -b 64 --lr 0.1 \\
        --det -n resnet20_digits_agp --compress examples/agp-pruning/resnet20_digits.schedule_agp.yaml

Each run writes to ``<out-dir>/<name>___<timestamp>/``: the log file, TensorBoard events, CSVs of the
training progress, ``checkpoint.pth.tar`` / ``best.pth.tar`` and, at the end, ``summary.json``.
Resume an interrupted run with ``--resume-from <run dir>/checkpoint.pth.tar`` (and the same schedule).
"""
import logging
import os
import time
from collections import OrderedDict

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

import distiller
import distiller.cli
import distiller.cli.quantization
import distiller.thinning
from distiller.apputils import save_checkpoint
from distiller.apputils.execution_env import log_execution_env_state
from distiller.data_loggers import (CsvLogger, PythonLogger, TensorBoardLogger, log_training_progress,
                                    log_weights_sparsity)
from distiller.regularization import drops_only_in_training

import app_utils
import reporting

msglogger = logging.getLogger()


def get_args_parser():
    """The command line: the common groups of :mod:`distiller.cli` plus the feature groups available."""
    parser = distiller.cli.ArgumentParser(description="distiller image classification model compression")
    distiller.cli.add_common_args(parser)
    distiller.cli.add_thinning_args(parser)
    distiller.cli.add_post_train_quant_args(parser)
    return parser


def _progress(loader, description):
    """A progress bar over ``loader``, shown only on a terminal and only for loops longer than 2 s."""
    return tqdm(loader, desc=description, unit="batch", leave=False, disable=None, delay=2)


def train_one_epoch(model, criterion, optimizer, loader, epoch, scheduler, num_classes, loggers=(), print_freq=10):
    """Trains ``model`` for one epoch, calling the compression scheduler's mini-batch callbacks.

    Returns:
        ``{'Loss', 'Top1', 'Top5'}`` over the epoch (Loss: the criterion's, without regularization terms).
    """
    model.train()
    device = distiller.model_device(model)
    scores = app_utils.RunningScores(num_classes)
    steps = len(loader)
    batch_start = time.time()
    for step, (inputs, target) in enumerate(_progress(loader, f"Epoch {epoch}")):
        inputs, target = inputs.to(device, non_blocking=True), target.to(device, non_blocking=True)
        scheduler.on_minibatch_begin(epoch, step, steps, optimizer)
        output = model(inputs)
        loss = criterion(output, target)
        policy_loss = scheduler.before_backward_pass(epoch, step, steps, loss, optimizer=optimizer,
                                                     return_loss_components=True)
        optimizer.zero_grad(set_to_none=True)
        policy_loss.overall_loss.backward()
        scheduler.before_parameter_optimization(epoch, step, steps, optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(epoch, step, steps, optimizer)
        scores.update(output, target, loss)
        if (step + 1) % print_freq == 0 or step + 1 == steps:
            stats = OrderedDict(("Objective Loss" if k == "Loss" else k, v) for k, v in scores.values().items())
            if policy_loss.loss_components:
                stats["Overall Loss"] = policy_loss.overall_loss.item()
                stats.update((c.name, float(c.value)) for c in policy_loss.loss_components)
            stats["LR"] = optimizer.param_groups[0]["lr"]
            stats["Time"] = (time.time() - batch_start) / (step + 1)
            log_training_progress(("Performance/Training/", stats), None, epoch, step + 1, steps, print_freq,
                                  loggers)
    return scores.values()


def evaluate(model, criterion, loader, num_classes, collect_predictions=False):
    """Evaluates ``model`` on ``loader``.

    Returns:
        ``{'Loss', 'Top1', 'Top5'}``, plus ``'targets'`` and ``'predictions'`` lists when
        ``collect_predictions``.
    """
    model.eval()
    device = distiller.model_device(model)
    scores = app_utils.RunningScores(num_classes)
    targets, predictions = [], []
    with torch.no_grad():
        for inputs, target in _progress(loader, "Evaluating"):
            inputs, target = inputs.to(device, non_blocking=True), target.to(device, non_blocking=True)
            output = model(inputs)
            scores.update(output, target, criterion(output, target))
            if collect_predictions:
                targets += target.tolist()
                predictions += output.argmax(dim=1).tolist()
    results = scores.values()
    if collect_predictions:
        results.update(targets=targets, predictions=predictions)
    return results


def train_and_validate(args, exp, criterion, loggers, run_dir):
    """The epoch loop: train, validate, step the schedule, log, checkpoint. Data order, augmentation and
    dropout of epoch ``e`` depend only on ``(seed, e)``, so a resumed run repeats an uninterrupted one."""
    for epoch in range(exp.start_epoch, args.epochs):
        distiller.set_seed(exp.seed + epoch)
        if hasattr(exp.train_loader.sampler, "set_epoch"):
            exp.train_loader.sampler.set_epoch(epoch)
        exp.scheduler.on_epoch_begin(epoch, exp.optimizer)
        start, start_cpu = time.time(), time.process_time()
        train = train_one_epoch(exp.model, criterion, exp.optimizer, exp.train_loader, epoch, exp.scheduler,
                                exp.num_classes, loggers, args.print_freq)
        train.update(seconds=time.time() - start, cpu_seconds=time.process_time() - start_cpu)
        if drops_only_in_training(exp.scheduler, epoch):
            # BatchNorm statistics gathered with dropped filters do not fit the full network evaluated next.
            with torch.no_grad():
                torch.optim.swa_utils.update_bn(exp.train_loader, exp.model, distiller.model_device(exp.model))
            msglogger.info("Recalibrated the BatchNorm statistics of the full network (filters were dropped in "
                           "training)")
        with exp.scheduler.soft_masks_applied():
            valid = evaluate(exp.model, criterion, exp.valid_loader, exp.num_classes)
        lr = exp.optimizer.param_groups[0]["lr"]
        exp.scheduler.on_epoch_end(epoch, exp.optimizer, metrics={"min": valid["Loss"], "max": valid["Top1"]})
        with exp.scheduler.soft_masks_applied():
            stats = reporting.weight_statistics(exp.model)
            log_weights_sparsity(exp.model, epoch, loggers[1:])
        _log_epoch(args, epoch, train, valid, stats, lr, loggers[1:])
        exp.score_history.append({"epoch": epoch, "top1": valid["Top1"], "top5": valid["Top5"],
                                  "sparsity": stats["sparsity"], "params_nonzero": stats["params_nonzero"]})
        ranked = app_utils.best_scores(exp.score_history, args.num_best_scores)
        for score in ranked:
            msglogger.info("==> Best [Top1: %.3f  Top5: %.3f  Sparsity: %.2f  NNZ-Params: %d on epoch: %d]",
                           score["top1"], score["top5"], score["sparsity"], score["params_nonzero"], score["epoch"])
        save_checkpoint(epoch, exp.arch, exp.model, exp.optimizer, exp.scheduler, is_best=ranked[0]["epoch"] == epoch,
                        dir=run_dir, extras={"seed": exp.seed, "dataset": exp.dataset, "current_top1": valid["Top1"],
                                             "score_history": exp.score_history})


def _log_epoch(args, epoch, train, valid, stats, lr, file_loggers):
    """One console line per epoch, and a row of ``epoch.csv`` / TensorBoard ``Epoch/*`` scalars."""
    msglogger.info("Epoch %d/%d  train loss %.4f top1 %.2f | valid loss %.4f top1 %.2f top5 %.2f | "
                   "sparsity %.2f%% | lr %.4g | %.1fs", epoch, args.epochs - 1, train["Loss"], train["Top1"],
                   valid["Loss"], valid["Top1"], valid["Top5"], stats["sparsity"], lr, train["seconds"])
    epoch_stats = OrderedDict([
        ("train_loss", train["Loss"]), ("train_top1", train["Top1"]), ("train_top5", train["Top5"]),
        ("valid_loss", valid["Loss"]), ("valid_top1", valid["Top1"]), ("valid_top5", valid["Top5"]),
        ("sparsity", stats["sparsity"]), ("lr", lr), ("train_seconds", train["seconds"]),
        ("train_cpu_seconds", train["cpu_seconds"])])
    log_training_progress(("Epoch/", epoch_stats), None, epoch, 0, 1, 1, file_loggers)


def _completed_epochs(args, exp):
    """The number of training epochs the final model went through."""
    return exp.start_epoch if args.evaluate else max(exp.start_epoch, args.epochs)


def _thinnify(args, exp, run_dir):
    """Removes the all-zero filters from the model, saves it and reports the size change."""
    before = reporting.model_statistics(exp.model, exp.dummy_input)
    distiller.thinning.remove_filters(exp.model, exp.scheduler.zeros_mask_dict, optimizer=exp.optimizer,
                                      dummy_input=exp.dummy_input, scheduler=exp.scheduler)
    after = reporting.model_statistics(exp.model, exp.dummy_input)
    path = save_checkpoint(_completed_epochs(args, exp) - 1, exp.arch, exp.model, exp.optimizer, exp.scheduler,
                           name="thinned", dir=run_dir, extras={"seed": exp.seed, "dataset": exp.dataset})
    msglogger.info("Thinned the model: weights %d -> %d, MACs %d -> %d; saved %s",
                   before["params_total"], after["params_total"], before["macs"], after["macs"], path)


def _test_and_summarize(args, exp, criterion, loggers, run_dir):
    """Tests the final model; returns the summary."""
    test = evaluate(exp.model, criterion, exp.test_loader, exp.num_classes, collect_predictions=args.confusion)
    msglogger.info("Test: loss %.4f  top1 %.2f  top5 %.2f", test["Loss"], test["Top1"], test["Top5"])
    epochs = _completed_epochs(args, exp)
    log_training_progress(("Performance/Test/", {k: test[k] for k in ("Loss", "Top1", "Top5")}), None, -1,
                          epochs, 1, 1, loggers[1:])
    if args.confusion:
        msglogger.info("Confusion matrix (test set):\n%s",
                       reporting.confusion_table(test["targets"], test["predictions"], exp.num_classes))
    loggers[0].log_weights_sparsity(exp.model, epochs - 1)
    best = app_utils.best_scores(exp.score_history, 1)
    summary = {"arch": exp.arch, "dataset": exp.dataset, "top1": test["Top1"], "top5": test["Top5"],
               "loss": test["Loss"], "best_top1": best[0]["top1"] if best else None,
               "best_epoch": best[0]["epoch"] if best else None,
               **reporting.model_statistics(exp.model, exp.dummy_input),
               "epochs": epochs, "seed": exp.seed, "run_dir": run_dir}
    return summary


def _quantize_and_evaluate(args, exp, criterion, run_dir):
    """Post-training quantization of the final model (``--quantize-eval``, see distiller.cli.quantization)."""
    return distiller.cli.quantization.quantize_and_evaluate(
        exp.model, args, exp.test_loader, lambda model, loader: evaluate(model, criterion, loader, exp.num_classes),
        exp.dummy_input, run_dir, arch=exp.arch, scheduler=exp.scheduler, epoch=_completed_epochs(args, exp) - 1)


def main(args):
    """Runs the application; returns the run's summary (None when it only exports to ONNX)."""
    started = time.time(), time.process_time()
    with app_utils.logging_before_run_dir(lambda: app_utils.create_run_log(args), args.verbose) as run:
        exp = app_utils.build_experiment(args)
        if args.quantize_eval:  # bad quantization settings fail here, before any data is read
            distiller.cli.quantization.check_quantization_args(exp.model, args)
    run_dir = run.log.logdir
    log_execution_env_state([args.compress], run_dir, args=args)
    if args.export_onnx is not None:
        reporting.export_onnx(exp.model, exp.dummy_input, args.export_onnx or os.path.join(run_dir, f"{exp.arch}.onnx"))
        return None
    loggers = [PythonLogger(msglogger), TensorBoardLogger(run_dir), CsvLogger(logdir=run_dir)]
    criterion = torch.nn.CrossEntropyLoss()
    try:
        with logging_redirect_tqdm():
            if not args.evaluate:
                if args.save_untrained_model:
                    save_checkpoint(-1, exp.arch, exp.model, name="untrained", dir=run_dir)
                train_and_validate(args, exp, criterion, loggers, run_dir)
            if args.thinnify:
                _thinnify(args, exp, run_dir)
            with exp.scheduler.soft_masks_applied():
                summary = _test_and_summarize(args, exp, criterion, loggers, run_dir)
            if args.quantize_eval:
                summary["quantized"] = _quantize_and_evaluate(args, exp, criterion, run_dir)
    finally:
        for logger in loggers:
            logger.close()
    summary.update(wall_seconds=round(time.time() - started[0], 2),
                   cpu_seconds=round(time.process_time() - started[1], 2))
    reporting.write_summary(run_dir, summary)
    return summary


if __name__ == "__main__":
    raise SystemExit(app_utils.run_cli(main, get_args_parser()))
