"""``EarlyExitMgr``: Distiller's manager of early exits, over :mod:`distiller.models.early_exit`.

Example:
    >>> mgr = EarlyExitMgr()
    >>> mgr.attach_exits(model, [('layer1.2.relu2', nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ...                                                          nn.Linear(16, 10)))])
    >>> final = model(images)
    >>> exit_logits = mgr.get_exits_outputs(model) + [final]
    >>> mgr.delete_exits_outputs(model)
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .errors import UnmatchedNameError
from .models.early_exit import BranchPoint, attach_exit

__all__ = ["EarlyExitMgr"]


class EarlyExitMgr:
    """Attaches exit branches to a model and collects their outputs after a forward pass (Teerapittayanon et
    al. 2016, "BranchyNet: Fast Inference via Early Exiting from Deep Neural Networks").

    Attributes:
        exit_points: the names of the modules whose outputs feed an exit, in attachment order.
    """

    def __init__(self) -> None:
        self.exit_points: list[str] = []

    def attach_exits(self, model: nn.Module, exits_def: Iterable[tuple[str, nn.Module]]) -> None:
        """Attaches each ``(module name, exit branch)`` of ``exits_def``: the named module is replaced by a
        :class:`~distiller.models.early_exit.BranchPoint` that also feeds its output to the branch.

        Raises:
            UnmatchedNameError: a name matches no module of ``model`` (nothing is attached then).
        """
        exits_def = list(exits_def)
        names = [name for name, _ in model.named_modules() if name]
        for exit_point, _ in exits_def:
            if exit_point not in names:
                raise UnmatchedNameError(exit_point, names, "module")
        for exit_point, exit_branch in exits_def:
            attach_exit(model, exit_point, exit_branch)
            self.exit_points.append(exit_point)

    def _branch_point(self, model: nn.Module, exit_point: str) -> BranchPoint:
        module = model.get_submodule(exit_point)
        if not isinstance(module, BranchPoint):
            raise RuntimeError(f"'{exit_point}' of this model is a {type(module).__name__}, not an exit: pass the "
                               f"model given to attach_exits")
        return module

    def get_exits_outputs(self, model: nn.Module) -> list[torch.Tensor]:
        """The outputs of the exits from the last forward pass, in :attr:`exit_points` order.

        Raises:
            RuntimeError: an exit has no output (no forward pass since :meth:`delete_exits_outputs`).
        """
        outputs = []
        for exit_point in self.exit_points:
            output = self._branch_point(model, exit_point).output
            if output is None:
                raise RuntimeError(f"the exit at '{exit_point}' has no output: run a forward pass first (outputs are "
                                   f"cleared by delete_exits_outputs)")
            outputs.append(output)
        return outputs

    def delete_exits_outputs(self, model: nn.Module) -> None:
        """Lets go of the exits' outputs (so no activation outlives the training step)."""
        for exit_point in self.exit_points:
            self._branch_point(model, exit_point).output = None
