"""The teacher of a distillation run: built from an architecture name and trained weights, and checked
against the student before training starts."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
from torch import nn

from ..apputils.checkpoint import load_checkpoint, read_checkpoint
from ..errors import ArgumentError, CheckpointError, InputFileError
from ..models import create_model
from ..models.create import CPU

__all__ = ["TeacherSpec", "build_teacher", "check_same_outputs"]


class TeacherSpec(NamedTuple):
    """Where a teacher comes from (the ``teacher:`` of a ``KnowledgeDistillation`` schedule entry).

    Attributes:
        arch: an architecture of ``distiller.models`` (``--kd-teacher``).
        dataset: the dataset the teacher was trained on (its input format and number of classes).
        checkpoint: a checkpoint of a trained ``arch`` (``--kd-resume``); a path relative to the working directory.
        pretrained: use the architecture's published weights instead (``--kd-pretrained``; torchvision ImageNet
            models, needs network access the first time).
    """
    arch: str
    dataset: str
    checkpoint: Optional[str] = None
    pretrained: bool = False


def build_teacher(spec: TeacherSpec, device: torch.device) -> nn.Module:
    """The trained teacher that ``spec`` describes, on ``device``, in eval mode.

    Raises:
        ArgumentError: neither or both of ``checkpoint`` and ``pretrained``; an unknown architecture or dataset.
        CheckpointError: the checkpoint holds another architecture (naming both) or does not fit ``arch``.
        InputFileError: the checkpoint does not exist.
    """
    if (spec.checkpoint is None) != spec.pretrained:
        raise ArgumentError(f"the teacher '{spec.arch}' needs trained weights from exactly one source: give "
                            f"teacher.checkpoint (--kd-resume PATH) or teacher.pretrained: true (--kd-pretrained)"
                            f"{', not both' if spec.pretrained else ''}", argument="teacher")
    try:
        teacher = create_model(spec.pretrained, spec.dataset, spec.arch, parallel=False, device_ids=CPU)
    except ArgumentError as err:
        raise ArgumentError(f"teacher: {err}", argument="teacher") from None
    if spec.checkpoint is not None:
        _load_weights(teacher, spec.arch, spec.checkpoint)
    return teacher.to(device).eval()


def _load_weights(teacher: nn.Module, arch: str, path: str) -> None:
    try:
        saved_arch = read_checkpoint(path).get("arch")
    except InputFileError:
        raise InputFileError(f"the teacher checkpoint '{path}' does not exist (teacher.checkpoint, --kd-resume)") \
            from None
    if saved_arch is not None and saved_arch != arch:
        raise CheckpointError(f"the teacher checkpoint '{path}' holds a '{saved_arch}' model, but the teacher "
                              f"architecture is '{arch}': set teacher.arch (--kd-teacher) to '{saved_arch}', or give "
                              f"a checkpoint of '{arch}'")
    try:
        load_checkpoint(teacher, path, lean_checkpoint=True)
    except CheckpointError as err:
        raise CheckpointError(f"the teacher checkpoint does not fit the teacher architecture '{arch}': {err}") from None


def check_same_outputs(student_output: Any, teacher_output: Any, student_name: str,
                       teacher_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both models return one logits tensor of the same shape: a tensor, or an object whose ``logits`` is one
    (Hugging Face ``transformers`` model outputs).

    Returns:
        The student's and the teacher's logits.
    Raises:
        ArgumentError: an output without a logits tensor, or shapes that differ (naming both models and shapes).
    """
    logits = []
    for output, name in ((student_output, student_name), (teacher_output, teacher_name)):
        found = output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)
        if not isinstance(found, torch.Tensor):
            raise ArgumentError(f"the {name} returns a {type(output).__name__}; knowledge distillation needs models "
                                "that return one logits tensor (or an output with a 'logits' tensor)")
        logits.append(found)
    student_logits, teacher_logits = logits
    if student_logits.shape != teacher_logits.shape:
        raise ArgumentError(f"the {teacher_name} outputs shape {tuple(teacher_logits.shape)} but the {student_name} "
                            f"{tuple(student_logits.shape)} for the same input: distil from a teacher trained on the "
                            "same classes", argument="teacher")
    return student_logits, teacher_logits
