"""The image-classification engine's side of a ``torchrun`` launch: joining the process group from the command
line, checking which features run distributed, rank 0's run directory, and the sharded loaders.

``-b`` stays the global mini-batch (as it was with Distiller's DataParallel): each of N processes reads
``b / N`` samples per step, so a run with the same flags trains the same way on any number of processes.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Callable
from typing import Optional

import torch

from ..errors import ArgumentError
from .classifier_setup import Experiment
from .distributed import ProcessGroupInfo, broadcast_object, init_from_env, is_main_process, shard_loader
from .execution_env import RunLogger

__all__ = ["add_distributed_args", "join_process_group", "main_process_run_log", "shard_experiment"]

msglogger = logging.getLogger(__name__)

#: Flags of features that do not run distributed yet: (attribute, flag, what it does instead).
_SINGLE_PROCESS_FLAGS = (
    ("qe_lapq", "--qe-lapq", "LAPQ's search would score its candidates on each process's share of the batches"),
    ("activation_histograms", "--activation-histograms", "the histograms are collected in one pass"),
    ("greedy", "--greedy", "greedy pruning evaluates every candidate in one process"),
    ("export_onnx", "--export-onnx", "the export runs once"),
    ("earlyexit_thresholds", "--earlyexit_thresholds", "early-exit evaluation is not sharded"),
    ("summary", "--summary", "the summaries describe one model once"),
    ("sensitivity", "--sense", "the analysis tests on the whole test set"),
)


def add_distributed_args(parser: argparse.ArgumentParser) -> None:
    """The flags of runs started by ``torchrun`` (``--sync-bn``)."""
    group = parser.add_argument_group("Distributed training arguments (torchrun)")
    group.add_argument("--sync-bn", action="store_true",
                       help="under torchrun on GPUs, train with torch.nn.SyncBatchNorm: BatchNorm layers normalize "
                            "by the statistics of the whole global batch instead of each process's share "
                            "(checkpoints keep plain BatchNorm state; CUDA only, as PyTorch's SyncBatchNorm is; "
                            "QAT's fold_bn does not fold SyncBatchNorm)")


def _check_sync_batchnorm(args: argparse.Namespace, info: Optional[ProcessGroupInfo]) -> None:
    """``--sync-bn`` needs a torchrun launch on GPUs (PyTorch's SyncBatchNorm has no CPU implementation)."""
    if not getattr(args, "sync_bn", False):
        return
    if info is None:
        raise ArgumentError("--sync-bn synchronises BatchNorm statistics between the processes of a torchrun launch: "
                            "start the run with torchrun --nproc_per_node=N on GPUs, or drop --sync-bn")
    if info.backend != "nccl":
        raise ArgumentError("--sync-bn needs CUDA: torch.nn.SyncBatchNorm has no CPU implementation, and this run "
                            "trains on the CPU (gloo); drop --sync-bn (each process then normalizes by its own "
                            "share of the batch)")


def join_process_group(args: argparse.Namespace) -> Optional[ProcessGroupInfo]:
    """Joins the ``torchrun`` process group, when the process was started by ``torchrun``, and adapts ``args``
    (one GPU per process, no DataParallel); on ranks other than 0, only errors are logged from now on.

    Returns:
        the process's place in the group, or None for a one-process run.
    Raises:
        ArgumentError: ``--gpus`` under torchrun, a ``-b`` that the processes cannot share evenly, a feature
            that runs in one process only, or ``--sync-bn`` without torchrun or on the CPU.
    """
    info = init_from_env(use_cuda=torch.cuda.is_available() and not args.cpu)
    _check_sync_batchnorm(args, info)
    if info is None:
        return None
    if args.gpus is not None:
        raise ArgumentError(f"--gpus {','.join(map(str, args.gpus))}: under torchrun each process uses the GPU of "
                            "its LOCAL_RANK; drop --gpus (choose GPUs with CUDA_VISIBLE_DEVICES)")
    if args.batch_size % info.world_size:
        fitting = args.batch_size // info.world_size * info.world_size or info.world_size
        raise ArgumentError(f"-b {args.batch_size} is the global mini-batch and must be a multiple of the "
                            f"{info.world_size} processes; pass e.g. -b {fitting}")
    for attribute, flag, reason in _SINGLE_PROCESS_FLAGS:
        if getattr(args, attribute, None) not in (None, False, []):  # --export-onnx without a path is ""
            raise ArgumentError(f"{flag} runs in one process ({reason}): run it without torchrun")
    if info.backend == "nccl":
        args.gpus = [info.local_rank]
    args.load_serialized = True  # DistributedDataParallel replaces DataParallel
    if not info.is_main:
        logging.disable(logging.WARNING)  # rank 0 says it; errors still show
    return info


def main_process_run_log(create: Callable[[], RunLogger]) -> RunLogger:
    """Rank 0 creates the run directory and its log (``create()``); every other rank gets the same directory
    name, writes nothing there and logs errors only, to its console."""
    if is_main_process():
        run_log = create()
        broadcast_object((run_log.logdir, run_log.log_filename))
        return run_log
    logdir, log_filename = broadcast_object(("", ""))
    return RunLogger(logging.getLogger(), logdir, log_filename)


def shard_experiment(experiment: Experiment, info: ProcessGroupInfo) -> Experiment:
    """``experiment`` with its loaders sharded among the processes: the training loader padded so that every
    rank runs the same number of steps, the evaluation loaders not (their scores are all-reduced)."""
    def shard(loader: Optional[torch.utils.data.DataLoader], pad: bool) -> Optional[torch.utils.data.DataLoader]:
        return None if loader is None else shard_loader(loader, info, pad)

    valid = experiment.valid_loader
    sharded_test = shard(experiment.test_loader, pad=False)
    sharded_valid = sharded_test if valid is experiment.test_loader else shard(valid, pad=False)
    sharded_train = shard(experiment.train_loader, pad=True)
    msglogger.info("DistributedDataParallel: world size %d (%s); each process reads %s samples of every global "
                   "mini-batch", info.world_size, info.backend,
                   "its share of the" if sharded_train is None else sharded_train.batch_size)
    return dataclasses.replace(experiment, train_loader=sharded_train, valid_loader=sharded_valid,
                               test_loader=sharded_test)
