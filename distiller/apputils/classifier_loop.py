"""One epoch of training and one pass of evaluation of an image classifier, with the compression
scheduler's callbacks: the torchvision-reference ``train_one_epoch``/``evaluate`` pair, and Distiller's
``train``/``validate``/``test`` functions (same arguments, returning ``(top1, top5, loss)``) over them.
"""
from __future__ import annotations

import argparse
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

import torch
from torch import nn
from tqdm import tqdm

from ..data_loggers.logger import DataLogger, log_training_progress
from ..scheduler import CompressionScheduler
from ..utils import model_device
from .classifier_reports import RunningScores, confusion_table
from .distributed import ShardedSampler, all_reduce_scores, gather_lists, is_main_process

__all__ = ["train_one_epoch", "evaluate", "train", "validate", "test"]

msglogger = logging.getLogger(__name__)


def progress(loader: Iterable[Any], description: str) -> tqdm:
    """A progress bar with ETA over ``loader``, shown only on a terminal, only for loops longer than 2 s and, in a
    distributed run, only by rank 0."""
    return tqdm(loader, desc=description, unit="batch", leave=False, disable=None if is_main_process() else True,
                delay=2)


def final_logits(output: Any) -> torch.Tensor:
    """The logits scored in training: the model's output, or the final exit's of an early-exit network (which
    returns one output per exit, see :mod:`distiller.apputils.classifier_earlyexit`)."""
    return output[-1] if isinstance(output, (list, tuple)) else output


def train_one_epoch(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    loader: Iterable[Any], epoch: int, scheduler: Optional[CompressionScheduler] = None,
                    loggers: Sequence[DataLogger] = (), print_freq: int = 10,
                    scaler: Optional[torch.amp.GradScaler] = None) -> dict[str, float]:
    """Trains ``model`` for one epoch, calling the compression scheduler's mini-batch callbacks.

    With a ``scaler`` (float16 mixed precision), the loss is scaled for the backward pass and the gradients
    are unscaled before ``before_parameter_optimization``, so policies see the true gradients.

    Returns:
        ``{'Loss', 'Top1', 'Top5'}`` over the epoch (Loss: the criterion's, without regularization terms),
        over every process's shard when ``loader`` is sharded (a distributed run).
    """
    model.train()
    device = model_device(model)
    scores = RunningScores()
    steps = len(loader)  # type: ignore[arg-type]
    batch_start = time.time()
    loss_scaler = scaler if scaler is not None else torch.amp.GradScaler(enabled=False)  # disabled: plain steps
    for step, (inputs, target) in enumerate(progress(loader, f"Epoch {epoch}")):
        inputs, target = inputs.to(device, non_blocking=True), target.to(device, non_blocking=True)
        if scheduler is not None:
            scheduler.on_minibatch_begin(epoch, step, steps, optimizer)
        output = model(inputs)
        loss = criterion(output, target)
        overall_loss, components = loss, []
        if scheduler is not None:
            policy_loss = scheduler.before_backward_pass(epoch, step, steps, loss, optimizer=optimizer,
                                                         return_loss_components=True)
            overall_loss, components = policy_loss.overall_loss, policy_loss.loss_components  # type: ignore[union-attr]
        optimizer.zero_grad(set_to_none=True)
        loss_scaler.scale(overall_loss).backward()
        loss_scaler.unscale_(optimizer)
        if scheduler is not None:
            scheduler.before_parameter_optimization(epoch, step, steps, optimizer)
        loss_scaler.step(optimizer)
        loss_scaler.update()
        if scheduler is not None:
            scheduler.on_minibatch_end(epoch, step, steps, optimizer)
        scores.update(final_logits(output), target, loss)
        if (step + 1) % print_freq == 0 or step + 1 == steps:
            stats = OrderedDict(("Objective Loss" if k == "Loss" else k, v) for k, v in scores.values().items())
            if components:
                stats["Overall Loss"] = overall_loss.item()
                stats.update((c.name, float(c.value.detach())) for c in components)
            stats["LR"] = optimizer.param_groups[0]["lr"]
            stats["Time"] = (time.time() - batch_start) / (step + 1)
            log_training_progress(("Performance/Training/", stats), None, epoch, step + 1, steps, print_freq,
                                  list(loggers))
    return _over_shards(scores, loader).values()


def evaluate(model: nn.Module, criterion: nn.Module, loader: Iterable[Any],
             collect_predictions: bool = False) -> dict[str, Any]:
    """Evaluates ``model`` on ``loader``.

    Returns:
        ``{'Loss', 'Top1', 'Top5'}``, plus ``'targets'`` and ``'predictions'`` lists when
        ``collect_predictions``; over every process's shard when ``loader`` is sharded (a distributed run).
    """
    model.eval()
    device = model_device(model)
    scores = RunningScores()
    targets: list[int] = []
    predictions: list[int] = []
    with torch.no_grad():
        for inputs, target in progress(loader, "Evaluating"):
            inputs, target = inputs.to(device, non_blocking=True), target.to(device, non_blocking=True)
            output = model(inputs)
            scores.update(output, target, criterion(output, target))
            if collect_predictions:
                targets += target.tolist()
                predictions += output.argmax(dim=1).tolist()
    results: dict[str, Any] = dict(_over_shards(scores, loader).values())
    if collect_predictions:
        if isinstance(getattr(loader, "sampler", None), ShardedSampler):
            targets, predictions = gather_lists(targets), gather_lists(predictions)
        results.update(targets=targets, predictions=predictions)
    return results


def _over_shards(scores: RunningScores, loader: Iterable[Any]) -> RunningScores:
    """``scores`` of the whole set when ``loader`` reads one process's shard of it, else as they are."""
    return all_reduce_scores(scores) if isinstance(getattr(loader, "sampler", None), ShardedSampler) else scores


def _scores(results: Mapping[str, Any]) -> tuple[float, float, float]:
    return results["Top1"], results["Top5"], results["Loss"]


def _log_evaluation(phase: str, results: Mapping[str, Any], epoch: int, loggers: Sequence[DataLogger]) -> None:
    msglogger.info("%s: loss %.4f  top1 %.2f  top5 %.2f", phase, results["Loss"], results["Top1"], results["Top5"])
    log_training_progress((f"Performance/{phase}/", {k: results[k] for k in ("Loss", "Top1", "Top5")}), None,
                          epoch, 0, 1, 1, list(loggers))


def _evaluate_and_log(phase: str, loader: Iterable[Any], model: nn.Module, criterion: nn.Module,
                      loggers: Optional[Sequence[DataLogger]], args: Optional[argparse.Namespace],
                      epoch: int) -> dict[str, Any]:
    confusion = bool(getattr(args, "confusion", False))
    results = evaluate(model, criterion, loader, collect_predictions=confusion)
    _log_evaluation(phase, results, epoch, loggers or ())
    if confusion:
        num_classes = max(max(results["targets"]), max(results["predictions"])) + 1
        msglogger.info("Confusion matrix (%s set):\n%s", phase.lower(),
                       confusion_table(results["targets"], results["predictions"], num_classes))
    return results


def train(train_loader: Iterable[Any], model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
          epoch: int, compression_scheduler: Optional[CompressionScheduler], loggers: Sequence[DataLogger],
          args: argparse.Namespace) -> tuple[float, float, float]:
    """Distiller's ``train``: one training epoch (:func:`train_one_epoch`, logging every ``args.print_freq``
    mini-batches). Returns ``(top1, top5, loss)``, the loss being the criterion's."""
    return _scores(train_one_epoch(model, criterion, optimizer, train_loader, epoch, compression_scheduler,
                                   loggers, getattr(args, "print_freq", 10)))


def validate(val_loader: Iterable[Any], model: nn.Module, criterion: nn.Module, loggers: Sequence[DataLogger],
             args: Optional[argparse.Namespace], epoch: int = -1) -> tuple[float, float, float]:
    """Distiller's ``validate``: evaluates on the validation set and logs the scores as
    ``Performance/Validation/*``. Returns ``(top1, top5, loss)``."""
    return _scores(_evaluate_and_log("Validation", val_loader, model, criterion, loggers, args, epoch))


def test(test_loader: Iterable[Any], model: nn.Module, criterion: nn.Module,
         loggers: Optional[Sequence[DataLogger]] = None, activations_collectors: Optional[Mapping[str, Any]] = None,
         args: Optional[argparse.Namespace] = None) -> tuple[float, float, float]:
    """Distiller's ``test``: evaluates on the test set (with ``args.confusion``, also prints the confusion
    matrix) and logs ``Performance/Test/*``; the ``'test'`` collectors of ``activations_collectors`` (see
    :func:`~distiller.apputils.image_classifier.create_activation_stats_collectors`) record activation
    statistics meanwhile. Returns ``(top1, top5, loss)``."""
    from ..data_loggers import collectors_context

    with collectors_context((activations_collectors or {}).get("test") or {}):
        results = _evaluate_and_log("Test", test_loader, model, criterion, loggers, args, -1)
    return _scores(results)
