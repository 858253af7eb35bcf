"""Distiller's image-classification compression engine: :class:`ClassifierCompressor` and the functions
every sample application reuses (its command line, data, training, validation, test, post-training
quantization and activation statistics).

A complete application is a few lines::

    parser = init_classifier_compression_arg_parser(include_ptq_lapq_args=True)
    app = ClassifierCompressor(parser.parse_args(), script_dir=os.path.dirname(__file__))
    app.run_training_loop()
    top1, top5, loss = app.test()

``examples/classifier_compression/compress_classifier.py`` is such a client. The setup (all of
:func:`~distiller.apputils.classifier_setup.build_experiment`) validates the whole command line before the
run directory ``<--out-dir>/<--name>___<timestamp>`` is created; the run's log, TensorBoard events, CSVs and
checkpoints go there (``app.logdir``).

Started by ``torchrun``, every such application trains with ``DistributedDataParallel`` on sharded data, with
the compression decisions kept identical on every process and rank 0 alone writing the run directory (see
:mod:`distiller.apputils.classifier_distributed` and :mod:`distiller.apputils.distributed`).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any, Optional, Union

import torch
from torch.utils.data import DataLoader

from .. import cli
from ..errors import ArgumentError
from ..knowledge_distillation import add_distillation_args
from ..pruning.greedy_filter_pruning import GreedyStep, add_greedy_pruner_args, greedy_pruner
from ..data_loggers import (CsvLogger, DataLogger, PythonLogger, TensorBoardLogger, collectors_context,
                            log_activation_statistics, log_training_progress, log_weights_sparsity)
from ..regularization import drops_only_in_training
from ..thinning import remove_filters
from ..utils import model_device, set_seed
from . import classifier_reports as reports
from .app_runner import create_run_log, logging_before_run_dir
from .checkpoint import save_checkpoint
from .classifier_distributed import add_distributed_args, join_process_group, main_process_run_log, shard_experiment
from .classifier_analysis import epoch_reports
from .classifier_activations import (acts_histogram_collection, acts_quant_stats_collection,
                                     create_activation_stats_collectors, save_collectors_data)
from .classifier_earlyexit import EarlyExitLoss, earlyexit_setup, earlyexit_stats, evaluate_earlyexit, log_earlyexit
from .classifier_loop import evaluate, test, train, train_one_epoch, validate
from .classifier_setup import DEFAULT_ARCH, Experiment, build_experiment, loaders_of_args, resolve_dataset
from .distributed import MaskBroadcaster, broadcast_buffers, is_main_process, on_main_process
from .execution_env import log_execution_env_state
from .training_module import AMP_DTYPES, TrainingModule

__all__ = ["ClassifierCompressor", "init_classifier_compression_arg_parser", "load_data", "train", "validate", "test",
           "evaluate_model", "train_one_epoch", "evaluate", "create_activation_stats_collectors",
           "save_collectors_data", "acts_quant_stats_collection", "acts_histogram_collection"]

msglogger = logging.getLogger(__name__)

#: One loader, or several (None where the data has no such split, e.g. ``--validation-split 0``).
Loaders = Union[Optional[DataLoader], list[Optional[DataLoader]]]


def init_classifier_compression_arg_parser(include_ptq_lapq_args: bool = False) -> argparse.ArgumentParser:
    """The image-classification command line: :func:`distiller.cli.add_common_args`, ``--thinnify``, the
    activation statistics, early exits (``--earlyexit_*``), knowledge distillation (``--kd-*``), greedy filter
    pruning (``--greedy*``), the post-training quantization flags ``--quantize-eval``/``--qe-*`` (with the LAPQ
    ``--lapq-*`` flags when ``include_ptq_lapq_args``) and ``--sync-bn`` for torchrun launches."""
    parser = cli.ArgumentParser(description="distiller image classification model compression")
    cli.add_common_args(parser)
    cli.add_thinning_args(parser)
    cli.add_statistics_args(parser)
    cli.add_analysis_args(parser)
    cli.add_earlyexit_args(parser)
    add_distillation_args(parser, enable_pretrained=True)  # the teacher arch is checked when it is built
    add_greedy_pruner_args(parser)
    cli.add_post_train_quant_args(parser, add_lapq_args=include_ptq_lapq_args)
    add_distributed_args(parser)
    return parser


def load_data(args: argparse.Namespace, fixed_subset: bool = False, sequential: bool = False, load_train: bool = True,
              load_val: bool = True, load_test: bool = True) -> Loaders:
    """Distiller's ``load_data(args, ...)``: the loaders the command line describes.

    Returns:
        the requested loaders among (train, validation, test) in that order; a single loader when one is
        requested. Without training or validation loaders, only the test set is read.
    Raises:
        ArgumentError: nothing requested, or a dataset that cannot be resolved (see ``--dataset``).
    """
    flags = (load_train, load_val, load_test)
    if not any(flags):
        raise ArgumentError("load_data: load_train, load_val and load_test are all False; request at least one loader")
    dataset = resolve_dataset(args)
    loaders = loaders_of_args(args, dataset, args.arch or DEFAULT_ARCH[dataset],
                              args.seed if args.seed is not None else 0, test_only=not (load_train or load_val),
                              fixed_subset=fixed_subset, sequential=sequential)[:3]
    requested = [loader for loader, flag in zip(loaders, flags) if flag]
    return requested[0] if len(requested) == 1 else requested


def evaluate_model(test_loader: DataLoader, model: torch.nn.Module, criterion: torch.nn.Module, loggers: Any,
                   activations_collectors: Optional[dict[str, Any]] = None, args: Optional[argparse.Namespace] = None,
                   scheduler: Any = None, save_dir: str = ".") -> tuple[float, float, float]:
    """Distiller's ``evaluate_model``: with ``args.quantize_eval``, quantizes ``model`` post-training as the
    ``--qe-*`` flags say (:func:`distiller.cli.quantization.quantize_and_evaluate`, writing the quantized
    checkpoint to ``save_dir``) and tests the quantized model; otherwise tests ``model``.

    Returns:
        ``(top1, top5, loss)`` on the test set.
    """
    if args is not None and getattr(args, "quantize_eval", False):
        from ..cli.quantization import quantize_and_evaluate

        dummy_input = next(iter(test_loader))[0][:1].to(model_device(model))
        quantize_and_evaluate(model, args, test_loader, lambda m, loader: evaluate(m, criterion, loader), dummy_input,
                              save_dir, arch=args.arch, scheduler=scheduler)
    return test(test_loader, model, criterion, loggers, activations_collectors, args)


class ClassifierCompressor:
    """Distiller's engine for compressing an image classifier: build everything from the command line,
    then train with the compression schedule, validate, checkpoint and test.

    Attributes (Distiller's names): ``args``, ``model``, ``compression_scheduler``, ``optimizer``,
    ``start_epoch``, ``ending_epoch``, ``train_loader``, ``val_loader``, ``test_loader``, ``criterion``,
    ``pylogger``, ``tflogger``, ``logdir``; ``experiment`` holds the rest (arch, dataset, seed, dummy input).

    Args:
        args: the parsed :func:`init_classifier_compression_arg_parser` command line (copied).
        script_dir: the application's directory; a ``logging.conf`` there configures the run's logging.
    Raises:
        UserError: bad input (nothing is written then).
    """

    def __init__(self, args: argparse.Namespace, script_dir: Optional[str] = None) -> None:
        self.args = copy.copy(args)
        self._started = time.time(), time.process_time()
        #: This process's place in a torchrun launch (None in a one-process run), see
        #: :mod:`distiller.apputils.classifier_distributed`.
        self.process_group = join_process_group(self.args)
        log_cfg = os.path.join(script_dir, "logging.conf") if script_dir else None
        log_cfg = log_cfg if log_cfg and os.path.isfile(log_cfg) else None
        with logging_before_run_dir(lambda: main_process_run_log(lambda: create_run_log(self.args, log_cfg)),
                                    self.args.verbose) as run:
            self.experiment: Experiment = build_experiment(self.args)
            self._training = self._training_module()
            self.earlyexit = earlyexit_setup(self.args, self.model, self.experiment.dummy_input)
            self.activations_collectors = create_activation_stats_collectors(self.model, *self.args.activation_stats)
            if getattr(self.args, "quantize_eval", False):  # bad settings fail here, before any data is read
                from ..cli.quantization import check_quantization_args
                check_quantization_args(self.model, self.args)
        self.logdir: str = run.log.logdir
        if self.process_group is not None:
            self.experiment = shard_experiment(self.experiment, self.process_group)
            self.compression_scheduler.mask_sync = MaskBroadcaster()
        main = is_main_process()
        log_execution_env_state([self.args.compress], self.logdir if main else None, args=self.args)
        self.pylogger = PythonLogger(msglogger)
        self.tflogger: DataLogger = TensorBoardLogger(self.logdir) if main else DataLogger()
        self.csvlogger: DataLogger = CsvLogger(logdir=self.logdir) if main else DataLogger()
        self.criterion: torch.nn.Module = torch.nn.CrossEntropyLoss()
        if self.earlyexit is not None:
            self.criterion = EarlyExitLoss(self.args.earlyexit_lossweights or [])
        #: The early exits' test results (see :func:`evaluate_earlyexit`), once :meth:`test` ran.
        self.earlyexit_test: Optional[dict[str, Any]] = None
        # The current epoch's training and validation scores and learning rate, for its log line.
        self._epoch_train: dict[str, float] = {}
        self._epoch_valid: dict[str, Any] = {}
        self._epoch_lr = 0.0

    # Distiller's attribute names over the experiment.
    model = property(lambda self: self.experiment.model)
    compression_scheduler = property(lambda self: self.experiment.scheduler)
    optimizer = property(lambda self: self.experiment.optimizer)
    start_epoch = property(lambda self: self.experiment.start_epoch)
    ending_epoch = property(lambda self: self.args.epochs)
    train_loader = property(lambda self: self.experiment.train_loader)
    val_loader = property(lambda self: self.experiment.valid_loader)
    test_loader = property(lambda self: self.experiment.test_loader)

    @property
    def loggers(self) -> list[Any]:
        """The console, TensorBoard and CSV loggers (file loggers: ``loggers[1:]``)."""
        return [self.pylogger, self.tflogger, self.csvlogger]

    def close(self) -> None:
        """Flushes and closes the TensorBoard and CSV files."""
        for logger in self.loggers:
            logger.close()

    def __enter__(self) -> ClassifierCompressor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load_datasets(self) -> tuple[Optional[DataLoader], Optional[DataLoader], Optional[DataLoader]]:
        """The (train, validation, test) loaders; they are built (and the data checked) at construction."""
        return self.train_loader, self.val_loader, self.test_loader

    def train_one_epoch(self, epoch: int, verbose: bool = True) -> tuple[float, float, float]:
        """Trains one epoch with the schedule's mini-batch callbacks; returns ``(top1, top5, loss)``."""
        start, start_cpu = time.time(), time.process_time()
        with self._activation_statistics("train", epoch):
            scores = train_one_epoch(self._training(), self.criterion, self.optimizer, self.train_loader, epoch,
                                     self.compression_scheduler, self.loggers if verbose else self.loggers[1:],
                                     self.args.print_freq, scaler=self._scaler)
        self._epoch_train = dict(scores, seconds=time.time() - start, cpu_seconds=time.process_time() - start_cpu)
        if drops_only_in_training(self.compression_scheduler, epoch):
            # BatchNorm statistics gathered with dropped filters do not fit the full network evaluated next.
            with torch.no_grad():
                torch.optim.swa_utils.update_bn(self.train_loader, self.model, self.experiment.device)
            msglogger.info("Recalibrated the BatchNorm statistics of the full network (filters were dropped in "
                           "training)")
        broadcast_buffers(self.model)  # rank 0's BatchNorm statistics and quantization ranges (distributed runs)
        return scores["Top1"], scores["Top5"], scores["Loss"]

    def _training_module(self) -> TrainingModule:
        """The module :meth:`train_one_epoch` trains with (``--amp``, ``--channels-last``, ``--compile``,
        DistributedDataParallel under torchrun), and the loss scaler of ``--amp fp16``.

        Raises:
            ArgumentError: ``--amp fp16`` without CUDA.
        """
        amp = getattr(self.args, "amp", None)
        on_cuda = self.experiment.device.type == "cuda"
        if amp == "fp16" and not on_cuda:
            raise ArgumentError("--amp fp16 needs a CUDA device (float16 autocast with loss scaling); on the CPU use "
                                "--amp bf16")
        self._scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
        return TrainingModule(self.model, distributed=self.process_group is not None,
                              amp_dtype=AMP_DTYPES[amp] if amp else None,
                              channels_last=getattr(self.args, "channels_last", False),
                              compile=getattr(self.args, "compile", False))

    def validate_one_epoch(self, epoch: int, verbose: bool = True) -> tuple[float, float, float]:
        """Evaluates on the validation set (with soft masks applied); returns ``(top1, top5, loss)``."""
        with self.compression_scheduler.soft_masks_applied(), self._activation_statistics("valid", epoch):
            scores = self._evaluate(self.val_loader, "Validation", epoch)
        self._epoch_valid = scores
        return scores["Top1"], scores["Top5"], scores["Loss"]

    def train_validate_with_scheduling(self, epoch: int, validate: bool = True,
                                       verbose: bool = True) -> tuple[float, float, float]:
        """One scheduled epoch: ``on_epoch_begin``, training, validation, ``on_epoch_end`` (which receives the
        validation loss and top-1 as the ``min``/``max`` metrics). Returns the validation ``(top1, top5, loss)``
        (the training scores without ``validate``)."""
        set_seed(self.experiment.seed + epoch)  # epoch e's data order, augmentation, dropout depend on (seed, e)
        set_epoch = getattr(getattr(self.train_loader, "sampler", None), "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        self.compression_scheduler.on_epoch_begin(epoch, self.optimizer)
        scores = self.train_one_epoch(epoch, verbose)
        if validate:
            scores = self.validate_one_epoch(epoch, verbose)
        self._epoch_lr = self.optimizer.param_groups[0]["lr"]
        self.compression_scheduler.on_epoch_end(epoch, self.optimizer, metrics={"min": scores[2], "max": scores[0]})
        return scores

    def save_untrained_model(self) -> str:
        """Saves the model before training as ``untrained.pth.tar`` (for lottery-ticket studies); returns
        the path."""
        return on_main_process(save_checkpoint)(-1, self.experiment.arch, self.model, name="untrained",
                                                dir=self.logdir)

    def _finalize_epoch(self, epoch: int, top1: float, top5: float) -> None:
        """Logs the epoch, ranks it among the best and saves ``checkpoint.pth.tar`` (and ``best.pth.tar``)."""
        exp = self.experiment
        with self.compression_scheduler.soft_masks_applied():
            stats = reports.weight_statistics(self.model)
            log_weights_sparsity(self.model, epoch, self.loggers[1:])
        self._log_epoch(epoch, stats)
        epoch_reports(self, epoch)
        exp.score_history.append({"epoch": epoch, "top1": top1, "top5": top5, "sparsity": stats["sparsity"],
                                  "params_nonzero": stats["params_nonzero"]})
        ranked = reports.best_scores(exp.score_history, self.args.num_best_scores)
        for score in ranked:
            msglogger.info("==> Best [Top1: %.3f  Top5: %.3f  Sparsity: %.2f  NNZ-Params: %d on epoch: %d]",
                           score["top1"], score["top5"], score["sparsity"], score["params_nonzero"], score["epoch"])
        on_main_process(save_checkpoint)(epoch, exp.arch, self.model, self.optimizer, self.compression_scheduler,
                                         is_best=ranked[0]["epoch"] == epoch, dir=self.logdir,
                                         extras={"seed": exp.seed, "dataset": exp.dataset, "current_top1": top1,
                                                 "score_history": exp.score_history})

    def _log_epoch(self, epoch: int, stats: dict[str, Any]) -> None:
        """One console line per epoch, and a row of ``epoch.csv`` / TensorBoard ``Epoch/*`` scalars."""
        train_scores, valid, lr = self._epoch_train, self._epoch_valid, self._epoch_lr
        msglogger.info("Epoch %d/%d  train loss %.4f top1 %.2f | valid loss %.4f top1 %.2f top5 %.2f | "
                       "sparsity %.2f%% | lr %.4g | %.1fs", epoch, self.ending_epoch - 1, train_scores["Loss"],
                       train_scores["Top1"], valid["Loss"], valid["Top1"], valid["Top5"], stats["sparsity"], lr,
                       train_scores["seconds"])
        epoch_stats = OrderedDict([
            ("train_loss", train_scores["Loss"]), ("train_top1", train_scores["Top1"]),
            ("train_top5", train_scores["Top5"]), ("valid_loss", valid["Loss"]), ("valid_top1", valid["Top1"]),
            ("valid_top5", valid["Top5"]), ("sparsity", stats["sparsity"]), ("lr", lr),
            ("train_seconds", train_scores["seconds"]), ("train_cpu_seconds", train_scores["cpu_seconds"])])
        log_training_progress(("Epoch/", epoch_stats), None, epoch, 0, 1, 1, self.loggers[1:])

    def run_training_loop(self) -> list[dict[str, Any]]:
        """Trains from ``start_epoch`` to ``ending_epoch`` with the schedule, validating and checkpointing each
        epoch. A resumed run repeats an uninterrupted one exactly. Returns the score history (one dict per
        epoch: epoch, top1, top5, sparsity, params_nonzero)."""
        for epoch in range(self.start_epoch, self.ending_epoch):
            top1, top5, _ = self.train_validate_with_scheduling(epoch)
            self._finalize_epoch(epoch, top1, top5)
        return self.experiment.score_history

    def _evaluate(self, loader: Iterable[Any], phase: str, epoch: int = -1) -> dict[str, Any]:
        """Evaluates the model on ``loader``: with early exits (logged per exit to the console, TensorBoard and
        ``earlyexit_<phase>.csv``), see :func:`evaluate_earlyexit`; otherwise
        :func:`~distiller.apputils.classifier_loop.evaluate`."""
        if self.earlyexit is None:
            return evaluate(self.model, self.criterion, loader)
        results = evaluate_earlyexit(self.model, self.criterion, loader, self.earlyexit)
        log_earlyexit(phase, results)
        log_training_progress(earlyexit_stats(phase, results), None, epoch, 0, 1, 1, self.loggers[1:])
        return results

    def validate(self, epoch: int = -1) -> tuple[float, float, float]:
        """Distiller's ``validate``: the validation scores, logged as ``Performance/Validation/*``."""
        with self.compression_scheduler.soft_masks_applied():
            if self.earlyexit is not None:
                results = self._evaluate(self.val_loader, "Validation", epoch)
                return results["Top1"], results["Top5"], results["Loss"]
            return validate(self.val_loader, self.model, self.criterion, self.loggers[1:], self.args, epoch)

    def test(self) -> tuple[float, float, float]:
        """Distiller's ``test``: the test scores of the model with its masks applied (``--confusion`` also
        prints the confusion matrix), logged as ``Performance/Test/*``; an early-exit network's scores are those
        of the exits its samples take (per-exit results in :attr:`earlyexit_test`)."""
        with self.compression_scheduler.soft_masks_applied(), self._activation_statistics("test", -1):
            if self.earlyexit is not None:
                self.earlyexit_test = self._evaluate(self.test_loader, "Test")
                return self.earlyexit_test["Top1"], self.earlyexit_test["Top5"], self.earlyexit_test["Loss"]
            return test(self.test_loader, self.model, self.criterion, self.loggers[1:], None, self.args)

    @contextlib.contextmanager
    def _activation_statistics(self, phase: str, epoch: int) -> Iterator[None]:
        """Runs the block with the phase's ``--activation-stats`` collectors, then logs the ReLU-output
        sparsity to TensorBoard and saves every collector's data under ``<run dir>/activation_stats/<phase>/``
        (the latest epoch's). Under torchrun the processes' collectors are combined first (each saw its shard)
        and rank 0 writes them."""
        collectors = self.activations_collectors[phase]
        with collectors_context(collectors):
            yield
        if collectors:
            for collector in collectors.values():
                collector.combine_processes()
            log_activation_statistics(epoch, phase, [self.tflogger], collectors["sparsity_ofm"])
            if is_main_process():
                save_collectors_data(collectors, os.path.join(self.logdir, "activation_stats", phase))

    def collect_activation_histograms(self) -> dict[str, Any]:
        """Activation histograms over ``--activation-histograms`` of the test set (two passes: ranges, then
        histograms), saved to ``<run dir>/acts_histograms.pt``; returns them."""
        with self.compression_scheduler.soft_masks_applied():
            return acts_histogram_collection(self.model, self.criterion, self.test_loader,
                                             self.args.activation_histograms, self.logdir)

    @property
    def completed_epochs(self) -> int:
        """The number of training epochs the model went through."""
        return self.start_epoch if self.args.evaluate else max(self.start_epoch, self.ending_epoch)

    def thinnify(self) -> str:
        """Removes the all-zero filters from the model, saves it as ``thinned.pth.tar`` and reports the size
        change; returns the checkpoint's path."""
        exp = self.experiment
        before = reports.model_statistics(self.model, exp.dummy_input)
        remove_filters(self.model, self.compression_scheduler.zeros_mask_dict, optimizer=self.optimizer,
                       dummy_input=exp.dummy_input, scheduler=self.compression_scheduler)
        after = reports.model_statistics(self.model, exp.dummy_input)
        path = on_main_process(save_checkpoint)(self.completed_epochs - 1, exp.arch, self.model, self.optimizer,
                                                self.compression_scheduler, name="thinned", dir=self.logdir,
                                                extras={"seed": exp.seed, "dataset": exp.dataset})
        msglogger.info("Thinned the model: weights %d -> %d, MACs %d -> %d; saved %s",
                       before["params_total"], after["params_total"], before["macs"], after["macs"], path)
        return path

    def greedy_prune(self) -> list[GreedyStep]:
        """Greedy filter pruning (``--greedy``): removes, step by step, the filters whose removal costs the
        least validation top-1 per MAC saved, fine-tuning after each step, until ``--greedy-target-density``
        of the MACs is left; each step's network is saved as ``greedy__<step>__<density>__<top1>.pth.tar``
        and described in ``greedy.csv``. Returns the steps."""
        exp, loader = self.experiment, self.val_loader

        def test_fn(model: torch.nn.Module) -> tuple[float, float, float]:
            results = evaluate(model, self.criterion, loader)
            return results["Top1"], results["Top5"], results["Loss"]

        def train_fn(model: torch.nn.Module, epochs: int) -> None:
            for epoch in range(epochs):
                train(self.train_loader, model, self.criterion, self.optimizer, epoch, self.compression_scheduler,
                      self.loggers[1:], self.args)

        def save_step(step: GreedyStep, model: torch.nn.Module) -> None:
            save_checkpoint(step.iteration, exp.arch, model, self.optimizer, self.compression_scheduler,
                            name=f"greedy__{step.iteration:03d}__{100 * step.density:.1f}__{step.top1:.1f}",
                            dir=self.logdir, extras={"seed": exp.seed, "dataset": exp.dataset})

        _, steps = greedy_pruner(self.model, self.args, self.args.greedy_target_density,
                                 self.args.greedy_pruning_step, test_fn, train_fn, dummy_input=exp.dummy_input,
                                 save_dir=self.logdir, optimizer=self.optimizer, scheduler=self.compression_scheduler,
                                 on_step=save_step)
        return steps

    def summary(self, scores: tuple[float, float, float]) -> dict[str, Any]:
        """The run's summary: the test ``scores`` (from :meth:`test`), the best epoch, the model's size and
        compute, and the run's identity; :meth:`write_summary` adds the run time and writes it."""
        exp = self.experiment
        best = reports.best_scores(exp.score_history, 1)
        with self.compression_scheduler.soft_masks_applied():
            self.pylogger.log_weights_sparsity(self.model, self.completed_epochs - 1)
            statistics = reports.model_statistics(self.model, exp.dummy_input)
        summary = {"arch": exp.arch, "dataset": exp.dataset, "top1": scores[0], "top5": scores[1], "loss": scores[2],
                   "best_top1": best[0]["top1"] if best else None, "best_epoch": best[0]["epoch"] if best else None,
                   **statistics, "epochs": self.completed_epochs,
                   "epochs_run": 0 if self.args.evaluate else self.completed_epochs - self.start_epoch,
                   "seed": exp.seed, "run_dir": self.logdir}
        if self.earlyexit_test is not None and self.earlyexit is not None:
            summary["early_exit"] = {"thresholds": self.earlyexit.thresholds, **{
                key: self.earlyexit_test[key] for key in ("exits", "avg_macs", "macs_saved")}}
        return summary

    def quantize_and_evaluate(self) -> dict[str, Any]:
        """Post-training quantization of the model (``--quantize-eval``, see :mod:`distiller.cli.quantization`);
        returns its results."""
        from ..cli.quantization import quantize_and_evaluate

        return quantize_and_evaluate(
            self.model, self.args, self.test_loader, lambda model, loader: evaluate(model, self.criterion, loader),
            self.experiment.dummy_input, self.logdir, arch=self.experiment.arch,
            scheduler=self.compression_scheduler, epoch=self.completed_epochs - 1)

    def export_onnx(self) -> str:
        """Exports the float model to ONNX (``--export-onnx [PATH]``, default ``<run dir>/<arch>.onnx``);
        returns the path."""
        path = self.args.export_onnx or os.path.join(self.logdir, f"{self.experiment.arch}.onnx")
        reports.export_onnx(self.model, self.experiment.dummy_input, path)
        return path

    def write_summary(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Adds the run's wall and CPU time to ``summary`` and writes ``summary.json``; returns it."""
        summary.update(wall_seconds=round(time.time() - self._started[0], 2),
                       cpu_seconds=round(time.process_time() - self._started[1], 2))
        on_main_process(reports.write_summary)(self.logdir, summary)
        return summary
