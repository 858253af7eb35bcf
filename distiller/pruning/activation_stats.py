"""Per-filter activation statistics collected with forward hooks, for activation-ranked pruning.

For each watched convolution the statistics describe its *rectified* output feature maps, as in the
papers: the collector traces the model with ``torch.fx`` to find the chain ``conv -> [BatchNorm] ->
ReLU``, hooks the last module before the rectifier (the BatchNorm when there is one) and applies the
rectification itself (so a ReLU module shared by several layers is no problem). When the model cannot be
traced, or no rectifier follows, it hooks the convolution and treats non-positive outputs as zeros
(logged once).

Statistics (per output channel, averaged over samples and positions):

* ``'apoz'``: Average Percentage of Zeros (Hu et al. 2016, "Network Trimming", arXiv:1607.03250).
* ``'mean'``: mean activation (Molchanov et al. 2016, arXiv:1611.06440).
"""
from __future__ import annotations

import logging
import typing
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from ..collectives import collective_device
from ..errors import ArgumentError
from ..utils import find_module_by_fq_name, model_is_parallel, normalize_module_name

logger = logging.getLogger(__name__)

STATISTICS = ("apoz", "mean")
_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm, torch.nn.GroupNorm)
_RECTIFIERS = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.LeakyReLU, torch.nn.ELU, torch.nn.SiLU, torch.nn.GELU)
_RECTIFIER_FUNCTIONS = {"relu", "relu_", "relu6", "leaky_relu", "elu", "silu", "gelu", "hardtanh"}


def per_channel_statistic(output: torch.Tensor, statistic: str) -> tuple[torch.Tensor, int]:
    """Per-channel sum of ``statistic`` over the batch and spatial positions, and the number of values.

    Args:
        output: rectified activations ``[N, C, ...]``.
        statistic: ``'apoz'`` (counts zeros) or ``'mean'`` (sums values).
    Returns:
        (tensor ``[C]``, int count per channel).
    """
    values = output.detach().transpose(0, 1).reshape(output.shape[1], -1)
    summed = (values == 0).sum(dim=1, dtype=torch.float32) if statistic == "apoz" else values.float().sum(dim=1)
    return summed, values.shape[1]


def _downstream_of(traced: torch.fx.GraphModule, module_name: str) -> tuple[str, bool]:
    """Name of the module to hook for ``module_name``'s rectified output, and whether a rectifier follows."""
    modules = dict(traced.named_modules())
    node = next((n for n in traced.graph.nodes if n.op == "call_module" and n.target == module_name), None)
    if node is None:
        return module_name, False
    hooked = module_name
    while len(node.users) == 1:
        user = next(iter(node.users))
        target_module = modules.get(user.target) if user.op == "call_module" else None
        if isinstance(target_module, _NORMS):
            hooked, node = user.target, user
            continue
        name = getattr(user.target, "__name__", str(user.target))
        return hooked, isinstance(target_module, _RECTIFIERS) or name in _RECTIFIER_FUNCTIONS
    return hooked, False


class ActivationStatsCollector:
    """Accumulates per-filter activation statistics of some convolutions of ``model``.

    Args:
        model: the model.
        module_names: the convolutions (or Linear layers) whose output filters are ranked.
        statistic: ``'apoz'`` or ``'mean'``.
    Raises:
        ValueError: for an unknown statistic or a module name that is not in the model.
    """

    def __init__(self, model: torch.nn.Module, module_names: Sequence[str], statistic: str) -> None:
        if statistic not in STATISTICS:
            raise ArgumentError(f"unknown activation statistic {statistic!r}; expected one of {STATISTICS}")
        self.statistic = statistic
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._last: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        hook_points = self._hook_points(model, [normalize_module_name(n) for n in module_names])
        for name, (hooked_name, rectified) in hook_points.items():
            module = find_module_by_fq_name(model, hooked_name)
            assert module is not None, hooked_name  # checked in _hook_points, or found there by tracing the model
            self._handles.append(module.register_forward_hook(self._make_hook(name, rectified)))

    @staticmethod
    def _hook_points(model: torch.nn.Module, names: list[str]) -> dict[str, tuple[str, bool]]:
        missing = [n for n in names if find_module_by_fq_name(model, n) is None]
        if missing:
            raise ArgumentError(f"activation statistics: no module named {missing[0]!r} in the model")
        try:
            unwrapped = typing.cast(torch.nn.Module, model.module) if model_is_parallel(model) else model
            traced = torch.fx.symbolic_trace(unwrapped)
        except Exception as err:  # noqa: BLE001 - any tracing failure means "use the fallback"
            logger.info("activation statistics: the model cannot be traced with torch.fx (%s); measuring "
                        "the convolution outputs, counting non-positive values as zeros", err)
            return {n: (n, True) for n in names}
        points: dict[str, tuple[str, bool]] = {}
        for name in names:
            hooked, rectified = _downstream_of(traced, name)
            if not rectified:
                logger.info("activation statistics: no rectifier after '%s'; measuring '%s' as is", name, hooked)
            points[name] = (hooked, rectified)
        return points

    def _make_hook(self, name: str, rectified: bool) -> Callable[[torch.nn.Module, Any, torch.Tensor], None]:
        def hook(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
            activations = torch.relu(output) if rectified else output
            summed, count = per_channel_statistic(activations, self.statistic)
            previous = self._sums.get(name)
            if previous is not None and previous.shape != summed.shape:
                # Thinning changed the channel count: statistics of the old channels no longer apply.
                self._sums.pop(name)
                self._counts.pop(name, None)
                self._last.pop(name, None)
            elif previous is not None:   # (DataParallel replicas report from several devices)
                summed = previous + summed.to(previous.device)
            self._sums[name] = summed
            self._counts[name] = self._counts.get(name, 0) + count
        return hook

    def statistic_of(self, module_name: str) -> torch.Tensor:
        """Per-filter statistic of ``module_name`` over the forward passes since the last call.

        When no forward pass happened since the last call, the last statistic is returned again.

        Raises:
            RuntimeError: when no forward pass has been seen at all.
        """
        name = normalize_module_name(module_name)
        self._sum_over_processes(name)
        if self._counts.get(name):
            self._last[name] = self._sums.pop(name) / self._counts.pop(name)
        if name not in self._last:
            raise RuntimeError(f"no activations of '{name}' were recorded yet: activation ranking needs forward "
                               f"passes first; start the pruning policy at a later epoch (or at an AGP "
                               f"initial_sparsity of 0), or run some batches through the model before pruning")
        return self._last[name]

    def _sum_over_processes(self, name: str) -> None:
        """In a distributed run (every process ranks at the same step of the same schedule), adds up what the
        processes recorded on their shards of the data, so that each ranks by the statistics of the whole
        global batches, as one process would. Nothing outside a process group, or when some process recorded
        nothing (the ranks' masks are then made rank 0's by the application's mask broadcast)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        summed = self._sums.get(name)
        device = summed.device if summed is not None else collective_device()
        seen = torch.tensor([int(summed is not None), self._counts.get(name, 0)], dtype=torch.int64, device=device)
        dist.all_reduce(seen)
        if summed is None or int(seen[0]) < dist.get_world_size():
            return
        dist.all_reduce(summed)
        self._counts[name] = int(seen[1])

    def remove(self) -> None:
        """Removes the forward hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The last computed statistic per module (plain tensors), so a resumed run can rank at once."""
        return {name: value.cpu() for name, value in self._last.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._last.update(state)
