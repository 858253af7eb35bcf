"""Distributed data-parallel runs under ``torchrun``: the process group, the collectives that keep compression
decisions identical on every process, and the sharded data.

``torchrun --nproc_per_node=N compress_classifier.py ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address in their environment; :func:`init_from_env` joins them into one
process group (NCCL on GPUs, one GPU per process; gloo on the CPU). Training runs PyTorch's
``DistributedDataParallel`` (gradients are averaged by its all-reduce); what the compression schedule decides
is made identical on every process here:

* masks (and the weights they zeroed) are broadcast from rank 0 whenever a scheduler callback changed them
  (:class:`MaskBroadcaster`, the scheduler's ``mask_sync`` hook): activation- and gradient-based rankings and
  thinning (which follows the masks) therefore agree on every rank, and a difference in parameter shapes
  between ranks is reported as the bug it is;
* buffers (BatchNorm statistics, quantization-aware-training ranges) are broadcast from rank 0 after each
  training epoch (:func:`broadcast_buffers`);
* evaluation scores are all-reduced over the shards of the evaluation sets (:func:`all_reduce_scores`).

Only rank 0 writes the run directory (log file, TensorBoard, CSVs, checkpoints); the others log warnings only.
Checkpoints hold the unwrapped model, so they resume with any number of processes.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional, TypeVar, cast

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from ..collectives import (all_reduce_sum_, barrier, broadcast_object, broadcast_tensors_, collective_device,
                           gather_objects, get_rank, get_world_size, is_distributed, is_main_process, on_main_process)
from ..masking import ParameterMasker
from ..scheduler import CompressionScheduler
from .classifier_reports import RunningScores

__all__ = ["ProcessGroupInfo", "init_from_env", "is_distributed", "get_rank", "get_world_size", "is_main_process",
           "barrier", "broadcast_object", "on_main_process", "broadcast_tensors_", "all_reduce_sum_",
           "broadcast_masks", "broadcast_buffers", "MaskBroadcaster", "ShardedSampler", "shard_loader",
           "all_reduce_scores", "gather_lists", "TORCHRUN_VARIABLES"]

msglogger = logging.getLogger(__name__)

#: The environment variables ``torchrun`` sets in each process it starts.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

T = TypeVar("T")


@dataclass(frozen=True)
class ProcessGroupInfo:
    """This process's place in the group: global ``rank``, ``world_size``, ``local_rank`` (its index on its
    machine, which selects its GPU) and the collective ``backend`` (``'nccl'`` or ``'gloo'``)."""
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(use_cuda: bool) -> Optional[ProcessGroupInfo]:
    """Joins the process group that ``torchrun`` describes in the environment (``env://`` rendezvous).

    Args:
        use_cuda: use the NCCL backend and GPU ``LOCAL_RANK`` (made the current device); else gloo on the CPU.
    Returns:
        the process's :class:`ProcessGroupInfo`, or None when the process was not started by ``torchrun``
        (no ``WORLD_SIZE`` in the environment) and no group is initialized. A group initialized already (by
        the caller) is used as it is.
    """
    if not dist.is_available():
        return None
    if not dist.is_initialized():
        if "WORLD_SIZE" not in os.environ:
            return None
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    backend = str(dist.get_backend())
    return ProcessGroupInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), backend)


def _manifest(scheduler: CompressionScheduler) -> list[tuple[str, tuple[int, ...], Optional[tuple[Any, ...]]]]:
    """(parameter name, shape, (mask shape, dtype) or None) of every parameter of the scheduler's model."""
    entries = []
    for name, param in scheduler.model.named_parameters():
        masker = scheduler.zeros_mask_dict.get(name)
        mask = masker.mask if masker is not None else None
        entries.append((name, tuple(param.shape), None if mask is None else (tuple(mask.shape), str(mask.dtype))))
    return entries


def broadcast_masks(scheduler: CompressionScheduler, src: int = 0) -> None:
    """Makes every process's masks, and the parameters they mask, rank ``src``'s.

    Rank ``src``'s list of parameters, shapes and masks is broadcast first and compared: a parameter missing
    or shaped differently on another rank means the ranks thinned differently, which is a bug (the masks
    they thinned by were already synchronised) and raises. Then the masks and the masked parameters travel in
    one message per dtype; a rank where a mask is missing (or of another shape or dtype) gets rank ``src``'s.

    Raises:
        RuntimeError: the model's parameters differ between the ranks.
    """
    if not is_distributed():
        return
    theirs = broadcast_object(_manifest(scheduler), src=src)
    params = dict(scheduler.model.named_parameters())
    ours = {name: tuple(param.shape) for name, param in params.items()}
    differing: list[tuple[str, Optional[tuple[int, ...]]]] = [(name, shape) for name, shape, _ in theirs
                                                              if ours.get(name) != shape]
    differing += [(name, None) for name in ours.keys() - {name for name, _, _ in theirs}]
    failed = torch.tensor([int(bool(differing))], device=collective_device())
    dist.all_reduce(failed)  # every rank stops (none is left waiting for the others' masks)
    if differing:
        name, shape = differing[0]
        raise RuntimeError(f"rank {get_rank()}: parameter '{name}' has shape {ours.get(name)} but {shape} on rank "
                           f"{src}: the processes' models diverged")
    if int(failed.item()):
        raise RuntimeError(f"rank {get_rank()}: the parameters of {int(failed.item())} other rank(s) differ from "
                           f"rank {src}'s: the processes' models diverged")
    sending = get_rank() == src
    received: list[tuple[ParameterMasker, torch.Tensor]] = []
    tensors: list[torch.Tensor] = []
    for name, _, mask_spec in theirs:
        if mask_spec is None:
            if not sending and name in scheduler.zeros_mask_dict and scheduler.zeros_mask_dict[name].has_mask:
                scheduler.zeros_mask_dict[name].mask = None
            continue
        masker = scheduler.zeros_mask_dict[name]
        mask_shape, dtype = mask_spec
        # The source sends its masks as they are (maybe expanded views); the others receive into new tensors.
        mask = masker.mask if sending else torch.empty(mask_shape, dtype=getattr(torch, dtype.split(".")[-1]),
                                                       device=params[name].device)
        if mask is None:
            raise RuntimeError(f"rank {src}: the mask of '{name}' disappeared while it was being broadcast")
        received.append((masker, mask))
        tensors += [mask, params[name]]
    broadcast_tensors_(tensors, src=src)
    if not sending:
        for masker, mask in received:
            masker.mask = mask


def broadcast_buffers(model: torch.nn.Module, src: int = 0) -> None:
    """Makes every process's buffers (BatchNorm statistics, quantization ranges) rank ``src``'s."""
    broadcast_tensors_([buffer for buffer in model.buffers() if buffer.numel()], src=src)


class MaskBroadcaster:
    """A :class:`~distiller.CompressionScheduler` ``mask_sync`` hook: after a callback in which the masks
    changed, :func:`broadcast_masks` from rank 0.

    Every rank calls the same callbacks with the same schedule, so the masks change in the same callbacks on
    every rank (the policies decide *when* from the schedule; only *what* may depend on the rank's data): the
    ranks' decisions to broadcast agree without a message. Callbacks that changed no mask cost nothing.
    """

    def __init__(self) -> None:
        self._synced_version: Optional[int] = None

    def __call__(self, scheduler: CompressionScheduler) -> None:
        version = scheduler.zeros_mask_dict.version
        if version == self._synced_version:
            return
        broadcast_masks(scheduler)
        self._synced_version = scheduler.zeros_mask_dict.version


class ShardedSampler(Sampler[int]):
    """Rank ``rank``'s share of another sampler's order: every ``world_size``-th index from position ``rank``.

    Like :class:`torch.utils.data.distributed.DistributedSampler`, but over the order of ``base`` (the
    application's :class:`~distiller.apputils.data_loaders.EpochSubsetSampler`, whose epoch ``e`` order depends
    on ``(seed, e)`` only): the ranks' ``k``-th batches of ``b`` samples together are the ``k``-th batch of
    ``b * world_size`` samples of the one-process run, so a run keeps its data order whatever the number of
    processes.

    Args:
        base: the sampler whose order is shared (identical on every rank).
        rank, world_size: this process's share.
        pad: repeat the first indices so that every rank has the same number of samples (training: every
            rank must run the same number of steps); evaluation shards are not padded (each sample counts
            once in the all-reduced scores).
    """

    def __init__(self, base: Sampler[int], rank: int, world_size: int, pad: bool) -> None:
        super().__init__()
        self.base, self.rank, self.world_size, self.pad = base, rank, world_size, pad

    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration produce epoch ``epoch``'s share (see the base sampler)."""
        set_epoch = getattr(self.base, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)

    def _total(self) -> int:
        size = len(self.base)  # type: ignore[arg-type]
        return math.ceil(size / self.world_size) * self.world_size if self.pad else size

    def __len__(self) -> int:
        return len(range(self.rank, self._total(), self.world_size))

    def __iter__(self) -> Iterator[int]:
        order = list(self.base)
        if self.pad and order:
            order += (order * math.ceil(self._total() / len(order)))[:self._total() - len(order)]
        return iter(order[self.rank::self.world_size])


def shard_loader(loader: DataLoader, info: ProcessGroupInfo, pad: bool) -> DataLoader:
    """A copy of ``loader`` that reads this rank's shard (:class:`ShardedSampler`) in batches of
    ``batch_size / world_size``: the ranks' batches together are ``loader``'s.

    Raises:
        ValueError: the batch size is not a multiple of the world size (the application checks it first).
    """
    batch_size = loader.batch_size or 1
    if batch_size % info.world_size:
        raise ValueError(f"batch size {batch_size} is not a multiple of the world size {info.world_size}")
    workers = loader.num_workers
    return DataLoader(loader.dataset, batch_size=batch_size // info.world_size,
                      sampler=ShardedSampler(cast(Sampler[int], loader.sampler), info.rank, info.world_size, pad),
                      num_workers=workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                      drop_last=loader.drop_last, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
                      persistent_workers=loader.persistent_workers,
                      prefetch_factor=loader.prefetch_factor if workers else None)


def gather_lists(items: list[T]) -> list[T]:
    """Every process's ``items``, concatenated in rank order (e.g. the predictions on each shard)."""
    if not is_distributed():
        return items
    return [item for part in gather_objects(items) for item in part]


def all_reduce_scores(scores: RunningScores) -> RunningScores:
    """``scores`` summed over the processes (each evaluated its shard): the scores of the whole set."""
    if not is_distributed():
        return scores
    device = collective_device()
    sums = torch.tensor([float(scores.samples), float(scores.loss_sum), float(scores.top1_hits),
                         float(scores.topk_hits)], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    total = RunningScores()
    total.samples = int(sums[0].item())
    total.loss_sum, total.top1_hits, total.topk_hits = float(sums[1]), int(sums[2].item()), int(sums[3].item())
    return total
