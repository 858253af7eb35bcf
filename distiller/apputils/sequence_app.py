"""What the sequence sample applications (word language model, NCF, GNMT) share: their command line, a training
epoch driven by a compression schedule, checkpoints that carry the model's constructor arguments and
vocabulary, and post-training quantization with calibration on the application's own batches.

Usage in an application::

    parser = distiller.cli.ArgumentParser(description=...)
    add_sequence_app_args(parser, epochs=6, lr=1e-3, batch_size=32)
    ...
    scheduler = schedule_of_args(model, optimizer, args)
    for epoch in range(args.epochs):
        train_one_epoch(model, batches, loss_fn, optimizer, epoch, scheduler)
    if args.quantize_eval:
        quantize_post_training(model, args, lambda m: evaluate(m, calibration_batches), dummy_input, run_dir)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Optional, TypeVar

import torch
from torch import nn

from ..cli.common import non_negative_int, positive_float, positive_int
from ..cli.quantization import add_post_train_quant_args, check_quantization_args, quantizer_from_args
from ..config import file_config
from ..data_loggers import collect_quant_stats
from ..errors import ArgumentError, CheckpointError
from ..quantization import PostTrainLinearQuantizer
from ..scheduler import CompressionScheduler
from .app_runner import create_run_log, logging_before_run_dir
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .execution_env import log_execution_env_state
from .text_data import Vocabulary

__all__ = ["add_sequence_app_args", "check_sequence_app_args", "schedule_of_args", "train_one_epoch",
           "quantize_post_training", "save_model", "read_model_checkpoint", "load_model_weights", "run_app",
           "weight_sparsity"]

msglogger = logging.getLogger(__name__)

_Setup = TypeVar("_Setup")
_Model = TypeVar("_Model", bound=nn.Module)
#: ``loss_fn(model, batch) -> loss``: the application's training objective for one batch.
LossFn = Callable[[nn.Module, Any], torch.Tensor]
#: ``--qe-*`` flags of the classifier application that the sequence applications do not support.
_UNSUPPORTED_QE_FLAGS = {"qe_convert_pytorch": "--qe-convert-pytorch", "qe_export_onnx": "--qe-export-onnx",
                         "qe_lapq": "--qe-lapq"}


def add_sequence_app_args(parser: argparse.ArgumentParser, epochs: int, lr: float, batch_size: int) -> None:
    """Adds the shared flags, with the application's defaults: ``--data``, ``--epochs``, ``--lr``, ``-b``,
    ``--compress``, ``--load``, ``--seed``, ``--name``, ``--out-dir``, ``-v`` and the post-training quantization
    flags (``--quantize-eval``, ``--qe-*``; ``--qe-calibration`` is the portion of the validation set)."""
    parser.add_argument("--data", metavar="DIR", default=None, help="dataset directory (default: generated or "
                                                                    "embedded data, see the README)")
    group = parser.add_argument_group("Training arguments")
    group.add_argument("--epochs", type=non_negative_int, default=epochs, metavar="N",
                       help=f"training epochs (default: {epochs}; 0 with --load only evaluates)")
    group.add_argument("--lr", type=positive_float, default=lr, help=f"initial learning rate (default: {lr})")
    group.add_argument("-b", "--batch-size", type=positive_int, default=batch_size, metavar="N",
                       help=f"mini-batch size (default: {batch_size})")
    group.add_argument("--compress", metavar="SCHEDULE_YAML", default=None,
                       help="compression schedule (YAML) applied while training")
    group.add_argument("--load", metavar="CHECKPOINT", default=None,
                       help="start from this checkpoint's weights (a run's checkpoint.pth.tar); its model settings "
                            "and vocabulary are used, and must fit the data")
    group.add_argument("--seed", type=int, default=0, help="seed of the data generation and of torch (default: 0)")
    group = parser.add_argument_group("Output arguments")
    group.add_argument("--name", "-n", default=None, metavar="NAME", help="prefix of the run directory")
    group.add_argument("--out-dir", "-o", dest="output_dir", default="logs", metavar="OUTPUT_DIR",
                       help="directory that receives the run directory (default: logs)")
    group.add_argument("--verbose", "-v", action="store_true", help="log debug messages and show error tracebacks")
    add_post_train_quant_args(parser, add_lapq_args=False)


def check_sequence_app_args(model: nn.Module, args: argparse.Namespace) -> None:
    """Checks the quantization flags against ``model`` before any data is read or anything is written.

    Raises:
        ArgumentError: a ``--qe-*`` flag these applications do not support, or a bad quantization flag.
        distiller.errors.ScheduleError: a problem in ``--qe-config-file``.
    """
    given = [flag for attribute, flag in _UNSUPPORTED_QE_FLAGS.items() if getattr(args, attribute, None)]
    if given:
        raise ArgumentError(f"{given[0]} is supported by the image-classifier application only; remove it")
    if args.quantize_eval:
        check_quantization_args(model, args)


def schedule_of_args(model: nn.Module, optimizer: torch.optim.Optimizer,
                     args: argparse.Namespace) -> CompressionScheduler:
    """The ``--compress`` schedule for ``model``, or an empty scheduler (which only holds masks).

    Raises:
        distiller.errors.ScheduleError, distiller.errors.InputFileError: a bad or missing schedule file.
    """
    if args.compress:
        return file_config(model, optimizer, args.compress)
    return CompressionScheduler(model)


def train_one_epoch(model: nn.Module, batches: Sequence[Any], loss_fn: LossFn, optimizer: torch.optim.Optimizer,
                    epoch: int, scheduler: CompressionScheduler, grad_clip: Optional[float] = None,
                    log_every: int = 50) -> float:
    """Trains ``model`` on ``batches`` for one epoch with the scheduler's callbacks (pruners mask the weights at
    the epoch start and after every step, regularizers add their loss terms).

    Args:
        loss_fn: ``loss_fn(model, batch)``, the training loss of one batch.
        grad_clip: clip the gradients' total norm to this value (recurrent models need it).
    Returns:
        the mean training loss of the epoch (without regularization terms).
    """
    model.train()
    scheduler.on_epoch_begin(epoch, optimizer)
    steps, total, start = len(batches), 0.0, time.time()
    for step, batch in enumerate(batches):
        scheduler.on_minibatch_begin(epoch, step, steps, optimizer)
        loss = loss_fn(model, batch)
        overall = scheduler.before_backward_pass(epoch, step, steps, loss, optimizer=optimizer)
        optimizer.zero_grad(set_to_none=True)
        typing.cast(torch.Tensor, overall).backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scheduler.before_parameter_optimization(epoch, step, steps, optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(epoch, step, steps, optimizer)
        total += loss.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            msglogger.info("Epoch %d [%d/%d] loss %.4f  lr %.3g  %.3f s/batch", epoch, step + 1, steps,
                           total / (step + 1), optimizer.param_groups[0]["lr"], (time.time() - start) / (step + 1))
    scheduler.on_epoch_end(epoch, optimizer)
    return total / max(steps, 1)


def quantize_post_training(model: nn.Module, args: argparse.Namespace, calibrate: Callable[[nn.Module], Any],
                           dummy_input: Any, run_dir: Optional[str]) -> PostTrainLinearQuantizer:
    """Quantizes ``model`` in place as the ``--qe-*`` flags (or ``--qe-config-file``) say.

    Calibration statistics come from ``--qe-stats-file``, the config file's ``model_activation_stats``, or
    ``calibrate(model)`` run on the float model (saved as ``acts_quantization_stats.yaml`` in ``run_dir``);
    ``--qe-dynamic`` measures ranges on every batch instead.

    Args:
        calibrate: runs the model on the calibration batches (e.g. part of the validation set).
        dummy_input: an example input of the model.
    Returns:
        the quantizer (its ``state_dict()`` records the settings).
    """
    stats = None if args.qe_dynamic or args.qe_stats_file else collect_quant_stats(model, calibrate,
                                                                                      save_dir=run_dir)
    quantizer = quantizer_from_args(model, args, stats)
    quantizer.prepare_model(dummy_input)
    msglogger.debug("Quantized model:\n%s", model)
    return quantizer


def save_model(run_dir: str, arch: str, model: nn.Module, epoch: int, model_args: Mapping[str, Any],
               vocabularies: Mapping[str, Vocabulary], scheduler: Optional[CompressionScheduler] = None,
               extras: Optional[Mapping[str, Any]] = None) -> str:
    """Saves ``checkpoint.pth.tar`` in ``run_dir`` with the model's constructor arguments and vocabularies, so
    :func:`read_model_checkpoint` can rebuild it and check it against the data."""
    data = {"model_args": dict(model_args), "vocabularies": {k: v.words for k, v in vocabularies.items()},
            **(extras or {})}
    return save_checkpoint(epoch, arch, model, scheduler=scheduler, extras=data, dir=run_dir)


def read_model_checkpoint(path: str, arch: str, vocabularies: Mapping[str, Vocabulary]) -> dict[str, Any]:
    """The constructor arguments saved by :func:`save_model`, after checking the checkpoint's architecture and
    that its vocabularies are those of the data.

    Raises:
        distiller.errors.InputFileError: no such file.
        CheckpointError: another application's checkpoint, or a vocabulary that differs from the data's.
    """
    checkpoint = read_checkpoint(path)
    extras = checkpoint.get("extras") or {}
    if checkpoint.get("arch") != arch or "model_args" not in extras:
        raise CheckpointError(f"'{path}' is not a checkpoint of {arch} (it holds {checkpoint.get('arch')!r}): load a "
                              f"checkpoint written by this application")
    saved = extras.get("vocabularies", {})
    for name, vocab in vocabularies.items():
        if name not in saved:
            raise CheckpointError(f"'{path}' has no {name} vocabulary: load a checkpoint written by this application")
        vocab.check_same(saved[name], path, which=name)
    return dict(extras["model_args"])


def load_model_weights(model: nn.Module, path: str) -> None:
    """Loads the weights of a :func:`save_model` checkpoint into a model built from its arguments."""
    load_checkpoint(model, path, lean_checkpoint=True)



def prepare_model(model_cls: Callable[..., _Model], model_args: Mapping[str, Any], args: argparse.Namespace,
                  make_optimizer: Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer]
                  ) -> tuple[_Model, torch.optim.Optimizer, CompressionScheduler]:
    """``model_cls(**model_args)`` with ``--load``'s weights, its optimizer and ``--compress`` schedule, after
    checking the quantization flags against it (:func:`check_sequence_app_args`)."""
    model = model_cls(**model_args)
    if args.load:
        load_model_weights(model, args.load)
    optimizer = make_optimizer(model.parameters())
    scheduler = schedule_of_args(model, optimizer, args)
    check_sequence_app_args(model, args)
    return model, optimizer, scheduler


def run_app(args: argparse.Namespace, setup: Callable[[], _Setup],
            body: Callable[[_Setup, str], dict[str, Any]]) -> dict[str, Any]:
    """Runs ``setup()`` (which reads and checks all input) before anything is written, then creates the run
    directory, records the environment and runs ``body(setup's result, run_dir)``; writes what it returns, with
    the wall-clock and CPU seconds, to ``<run dir>/summary.json`` and returns it. A user error in ``setup``
    leaves no run directory behind."""
    started = time.time(), time.process_time()
    with logging_before_run_dir(lambda: create_run_log(args), args.verbose) as run:
        prepared = setup()
    run_dir = run.log.logdir
    log_execution_env_state([args.compress, args.qe_config_file], run_dir, args=args)
    summary = body(prepared, run_dir)
    summary.update(wall_seconds=round(time.time() - started[0], 2),
                   cpu_seconds=round(time.process_time() - started[1], 2))
    path = os.path.join(run_dir, "summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)
    msglogger.info("Summary (%s): %s", path, json.dumps(summary))
    return summary


def weight_sparsity(model: nn.Module) -> float:
    """Percent of zeros among the elements of the model's weight matrices and embeddings (parameters of two or
    more dimensions; tied parameters counted once)."""
    weights = [p for p in model.parameters() if p.dim() > 1]
    total = sum(p.numel() for p in weights)
    zeros = sum(int((p == 0).sum()) for p in weights)
    return 100.0 * zeros / max(total, 1)
