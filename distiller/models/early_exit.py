"""Early exits: extra classifiers branching off a network's intermediate activations, so that easy inputs
can be classified before the last layer (Teerapittayanon et al., "BranchyNet: Fast Inference via Early
Exiting from Deep Neural Networks", ICPR 2016).

An exit is attached by replacing the module whose output it reads with a :class:`BranchPoint` that keeps
the original module as ``branched_module`` and the exit classifier as ``branch_net`` (Distiller's layout,
so parameter names read ``layer1.2.relu2.branch_net.2.weight``).
"""
from typing import Optional

import torch
import torch.nn as nn


class BranchPoint(nn.Module):
    """Runs ``branched_module`` and feeds its output to ``branch_net`` as well; returns the former and keeps
    the latter in ``output`` until :func:`pop_exit_outputs` collects it."""

    def __init__(self, branched_module: nn.Module, branch_net: nn.Module) -> None:
        super().__init__()
        self.branched_module = branched_module
        self.branch_net = branch_net
        self.output: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.branched_module(x)
        self.output = self.branch_net(x)
        return x


def attach_exit(model: nn.Module, module_name: str, branch_net: nn.Module) -> BranchPoint:
    """Replaces ``model``'s submodule ``module_name`` (e.g. ``'layer1.2.relu2'``) by a :class:`BranchPoint`
    that also feeds the submodule's output to ``branch_net``; returns the branch point."""
    parent_name, _, child_name = module_name.rpartition(".")
    parent = model.get_submodule(parent_name)
    branch_point = BranchPoint(getattr(parent, child_name), branch_net)
    setattr(parent, child_name, branch_point)
    return branch_point


def pop_exit_outputs(model: nn.Module) -> list:
    """The outputs of ``model``'s exits from its last forward pass, in module order; each branch point lets
    go of its output (so no activation outlives the step)."""
    outputs = []
    for module in model.modules():
        if isinstance(module, BranchPoint):
            outputs.append(module.output)
            module.output = None
    return outputs
