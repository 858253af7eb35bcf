"""The collectives the library uses in distributed runs: the process group's queries and coalesced in-place
reductions and broadcasts, each doing nothing outside an initialized process group.

The library never starts a process group; the application does (``torchrun`` and
:func:`distiller.apputils.distributed.init_from_env`). Where a library function combines what several processes
computed (calibration statistics, activation statistics), it uses these, so that one process without a group
behaves as before.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional, TypeVar

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "get_rank", "get_world_size", "is_main_process", "barrier", "collective_device",
           "broadcast_object", "on_main_process", "gather_objects", "broadcast_tensors_", "all_reduce_",
           "all_reduce_sum_"]

T = TypeVar("T")


def is_distributed() -> bool:
    """True in a process of an initialized process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """The global rank (0 outside a process group)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """The number of processes (1 outside a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0, and outside a process group."""
    return get_rank() == 0


def barrier() -> None:
    """Waits for every process of the group (nothing outside one)."""
    if is_distributed():
        dist.barrier()


def collective_device() -> torch.device:
    """Where the backend's tensors live: the current GPU for NCCL, the CPU for gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` of rank ``src`` on every process (pickled; for small objects such as paths and manifests)."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src, device=collective_device())
    return holder[0]


def on_main_process(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` run on rank 0 only (writing files, for instance); every process returns rank 0's result, once
    rank 0 has finished (the broadcast also synchronises the processes)."""
    def run(*args: Any, **kwargs: Any) -> T:
        result = fn(*args, **kwargs) if is_main_process() else None
        return broadcast_object(result)  # type: ignore[return-value]
    run.__doc__ = fn.__doc__
    return run


def gather_objects(obj: T) -> list[T]:
    """Every process's ``obj`` (pickled), in rank order; ``[obj]`` outside a process group."""
    if not is_distributed():
        return [obj]
    gathered: list[Optional[T]] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered  # type: ignore[return-value]


def _coalesced(tensors: Sequence[torch.Tensor], collective: Callable[[torch.Tensor], Any], copy_back: bool = True
               ) -> None:
    """Runs ``collective`` in place on one flat buffer per (dtype, device) of ``tensors`` and (when
    ``copy_back``) copies the result back: one message per dtype instead of one per tensor. bool travels as uint8
    (not every backend has it)."""
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    device = collective_device()
    for (dtype, _), group in groups.items():
        wire = torch.uint8 if dtype == torch.bool else dtype
        flat = torch.cat([t.detach().reshape(-1).to(device=device, dtype=wire) for t in group])
        collective(flat)
        if not copy_back:
            continue
        offset = 0
        with torch.no_grad():
            for tensor in group:
                count = tensor.numel()
                tensor.copy_(flat[offset:offset + count].view(tensor.shape).to(tensor.dtype))
                offset += count


def broadcast_tensors_(tensors: Sequence[torch.Tensor], src: int = 0) -> None:
    """Overwrites ``tensors`` on every process with rank ``src``'s values (coalesced per dtype)."""
    if is_distributed() and tensors:
        _coalesced(tensors, lambda flat: dist.broadcast(flat, src=src), copy_back=get_rank() != src)


def all_reduce_(tensors: Sequence[torch.Tensor], op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> None:
    """Replaces ``tensors`` on every process by their reduction ``op`` (``SUM``, ``MIN``, ``MAX``) over the
    processes, elementwise (coalesced: one message per dtype). Every process gets the same values."""
    if is_distributed() and tensors:
        _coalesced(tensors, lambda flat: dist.all_reduce(flat, op=op))


def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> None:
    """Replaces ``tensors`` on every process by their sum over the processes (coalesced per dtype)."""
    all_reduce_(tensors, dist.ReduceOp.SUM)
