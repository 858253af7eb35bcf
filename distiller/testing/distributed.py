"""Running a function in several gloo processes on one machine, as ``torchrun`` would start them: for tests of
the collectives and of distributed training on the CPU."""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["run_in_gloo_processes", "free_port"]


def free_port() -> int:
    """A TCP port that was free a moment ago on localhost (for the rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process(rank: int, world_size: int, port: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # tiny tests: the processes share the machine's cores
    try:
        fn(rank, world_size, *args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_in_gloo_processes(fn: Callable[..., Any], world_size: int, *args: Any) -> None:
    """Runs ``fn(rank, world_size, *args)`` in ``world_size`` new processes whose environment is the one
    ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); ``fn`` joins
    the group itself (``dist.init_process_group('gloo')`` or :func:`distiller.apputils.distributed.init_from_env`).
    ``fn`` must be a module-level function of an importable module (the new processes import it by name) and
    reports through files or exceptions.

    Raises:
        torch.multiprocessing.ProcessRaisedException: a process raised (with its traceback).
    """
    # Processes forked from a fork server that imported distiller once start in a moment (spawned ones import
    # torch and distiller again, seconds each); plain fork is unsafe once the calling process ran autograd.
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    if method == "forkserver":
        mp.get_context("forkserver").set_forkserver_preload(["distiller"])  # effective until the server starts
    mp.start_processes(_process, args=(world_size, free_port(), fn, args), nprocs=world_size, join=True,
                       start_method=method)
