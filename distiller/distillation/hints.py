"""Hint (feature) distillation: intermediate student outputs learn the teacher's, through a learned adapter.

Romero et al., *FitNets: Hints for Thin Deep Nets* (ICLR 2015, arXiv:1412.6550): the output of a *guided*
student layer is trained to predict the output of a *hint* layer of the teacher, through a regressor that
maps the student's channels to the teacher's; the hint loss is the squared error between the two. Here the
regressor is a 1×1 convolution (a bias-free linear layer for ``(N, C)`` features), created only where the
channel counts differ; the spatial sizes must already agree.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, NamedTuple

import annotated_types
import torch
import torch.nn.functional as F
from torch import nn

from ..apputils.checkpoint import POLICY_PARAM_GROUP
from ..errors import ArgumentError, CheckpointError, suggest
from ..spec import Real

__all__ = ["Hint", "HintLayers", "recording_outputs", "add_owned_param_group"]


class Hint(NamedTuple):
    """One hint: the output of the student's module ``student`` learns the output of the teacher's module
    ``teacher`` (exact module names, as in ``model.named_modules()``).

    Attributes:
        student: the guided module of the student.
        teacher: the hint module of the teacher.
        weight: the weight of this hint's loss (> 0).
    """
    student: str
    teacher: str
    weight: Annotated[Real, annotated_types.Gt(0)] = 1.0


@contextlib.contextmanager
def recording_outputs(modules: Sequence[nn.Module]) -> Iterator[dict[int, Any]]:
    """Within the block, ``outputs[i]`` is the latest output of ``modules[i]`` (forward hooks, removed on exit)."""
    outputs: dict[int, Any] = {}

    def recorder(index: int) -> Any:
        def record(module: nn.Module, inputs: Any, output: Any) -> None:
            outputs[index] = output
        return record

    handles = [module.register_forward_hook(recorder(index)) for index, module in enumerate(modules)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def _module(model: nn.Module, name: str, role: str, index: int) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        hint = suggest(name, [n for n in modules if n])
        raise ArgumentError(f"hints[{index}]: the {role} has no module '{name}'"
                            + (f"; did you mean {hint}?" if hint else "") + f" ({len(modules) - 1} modules exist)",
                            argument="hints", location=(index, role))
    return modules[name]


def _tensor_output(output: Any, index: int, role: str, name: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        found = "was not called" if output is None else f"returns a {type(output).__name__}"
        raise ArgumentError(f"hints[{index}]: the {role}'s module '{name}' {found} in the forward pass; hint a module "
                            "that returns one tensor", argument="hints", location=(index, role))
    return output


class HintLayers:
    """The hinted modules of a student and a teacher, and the adapters between them.

    Args:
        student, teacher: the two models.
        hints: the module pairs.
    Raises:
        ArgumentError: a module name that the model lacks (with the closest names); hints on a
            ``DataParallel`` student (its replicas would each record a slice of the batch).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, hints: Sequence[Hint]) -> None:
        if hints and isinstance(student, nn.DataParallel):
            raise ArgumentError("hints need a student on one device: DataParallel runs copies of the hinted "
                                "modules; distil the unwrapped model (model.module)", argument="hints")
        self.hints = list(hints)
        self.student_modules = [_module(student, h.student, "student", i) for i, h in enumerate(self.hints)]
        self.teacher_modules = [_module(teacher, h.teacher, "teacher", i) for i, h in enumerate(self.hints)]
        self.adapters = nn.ModuleDict()

    def build_adapters(self, student_features: Mapping[int, Any], teacher_features: Mapping[int, Any]) -> None:
        """Creates an adapter for each hint whose channel counts differ, from one forward pass's features.

        Raises:
            ArgumentError: a hinted output that is not a tensor, or shapes that differ in more than the channels.
        """
        for index, hint in enumerate(self.hints):
            ours = _tensor_output(student_features.get(index), index, "student", hint.student)
            theirs = _tensor_output(teacher_features.get(index), index, "teacher", hint.teacher)
            if ours.dim() != theirs.dim() or ours.shape[2:] != theirs.shape[2:] or ours.dim() not in (2, 4):
                raise ArgumentError(f"hints[{index}]: the student's '{hint.student}' outputs {tuple(ours.shape)} and "
                                    f"the teacher's '{hint.teacher}' {tuple(theirs.shape)}: hinted outputs must be "
                                    "(N, C) or (N, C, H, W) with the same H and W; choose modules at the same "
                                    "resolution", argument="hints", location=(index,))
            if ours.shape[1] != theirs.shape[1]:
                channels = (ours.shape[1], theirs.shape[1])
                adapter = nn.Linear(*channels, bias=False) if ours.dim() == 2 else nn.Conv2d(*channels, 1, bias=False)
                self.adapters[str(index)] = adapter.to(ours.device)

    @contextlib.contextmanager
    def recording(self) -> Iterator[tuple[dict[int, Any], dict[int, Any]]]:
        """Within the block, the latest outputs of the hinted student and teacher modules, by hint index."""
        with recording_outputs(self.student_modules) as ours, recording_outputs(self.teacher_modules) as theirs:
            yield ours, theirs

    def losses(self, student_features: Mapping[int, torch.Tensor],
               teacher_features: Mapping[int, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        """``(name, weight · MSE(adapter(student feature), teacher feature))`` for each hint."""
        losses = []
        for index, hint in enumerate(self.hints):
            adapter = self.adapters[str(index)] if str(index) in self.adapters else nn.Identity()
            loss = F.mse_loss(adapter(student_features[index]), teacher_features[index])
            losses.append((f"Hint Loss ({hint.student} -> {hint.teacher})", hint.weight * loss))
        return losses

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: tensor.detach().clone() for name, tensor in self.adapters.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restores the adapters' weights (in place: the optimizer keeps pointing at them).

        Raises:
            CheckpointError: the saved adapters do not fit these (the hints or the teacher changed).
        """
        own = {name: tuple(t.shape) for name, t in self.adapters.state_dict().items()}
        saved = {name: tuple(t.shape) for name, t in state.items()}
        if own != saved:
            raise CheckpointError(f"the saved hint adapters {saved} do not fit this policy's {own}: resume with the "
                                  "hints and teacher the checkpoint was trained with")
        self.adapters.load_state_dict(dict(state))


def add_owned_param_group(optimizer: torch.optim.Optimizer, owner: str, params: Sequence[nn.Parameter]) -> None:
    """Adds ``params`` (parameters outside the model) to ``optimizer`` as a group marked as ``owner``'s, with
    the settings of the optimizer's first group; or, when ``load_checkpoint`` rebuilt the optimizer with a
    placeholder group for ``owner``, puts ``params`` in its place and moves the saved optimizer state to them.

    Raises:
        ArgumentError: the optimizer already has a live group of ``owner`` (two policies with one name).
        CheckpointError: the saved group's state does not fit ``params``.
    """
    for group in optimizer.param_groups:
        if group.get(POLICY_PARAM_GROUP) != owner:
            continue
        placeholders = group["params"]
        if any(p.numel() for p in placeholders):
            raise ArgumentError(f"the optimizer already trains the parameters of a policy named '{owner}': give "
                                "each distillation policy its own name")
        _adopt_state(optimizer, owner, placeholders, params)
        group["params"] = list(params)
        return
    settings = {key: value for key, value in optimizer.param_groups[0].items() if key not in ("params", "initial_lr")}
    optimizer.add_param_group({**settings, "params": list(params), POLICY_PARAM_GROUP: owner})


def _adopt_state(optimizer: torch.optim.Optimizer, owner: str, placeholders: Sequence[torch.Tensor],
                 params: Sequence[nn.Parameter]) -> None:
    shapes = [tuple(p.shape) for p in params]
    if len(placeholders) != len(params):
        raise CheckpointError(f"the optimizer state saved for policy '{owner}' holds {len(placeholders)} parameters, "
                              f"but it trains {len(params)} {shapes}: resume with the hints the checkpoint used")
    for old, new in zip(placeholders, params):
        state = optimizer.state.pop(old, {})
        misfit = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.dim() and v.shape != new.shape]
        if misfit:
            raise CheckpointError(f"the optimizer state saved for policy '{owner}' ({misfit[0]} of shape "
                                  f"{tuple(state[misfit[0]].shape)}) does not fit its parameter of shape "
                                  f"{tuple(new.shape)}: resume with the hints and teacher the checkpoint used")
        if state:
            optimizer.state[new] = {k: v.to(new.device, new.dtype if v.is_floating_point() else v.dtype)
                                    if isinstance(v, torch.Tensor) and k != "step" else v for k, v in state.items()}
