"""The distillation loss of Hinton et al. (2015) and the weights that combine it with the student's own loss.

Hinton, Vinyals & Dean, *Distilling the Knowledge in a Neural Network* (NIPS 2014 Deep Learning Workshop,
arXiv:1503.02531): the student learns the teacher's *soft targets*, both models' logits softened by a
temperature ``T``; the soft-target term is scaled by ``T²`` so that its gradients keep their size as ``T``
changes.
"""
from __future__ import annotations

from typing import Annotated, NamedTuple

import annotated_types
import torch
import torch.nn.functional as F

from ..errors import ArgumentError
from ..spec import Real

__all__ = ["DistillationLossWeights", "soft_target_loss", "check_loss_weights"]

#: A loss weight: a real number >= 0 (YAML's numeric strings such as ``'1e-1'`` accepted).
LossWeight = Annotated[Real, annotated_types.Ge(0)]


class DistillationLossWeights(NamedTuple):
    """How the training loss is combined (Distiller's namedtuple ``(distill, student, teacher)``).

    Attributes:
        distill: weight of the soft-target (distillation) loss.
        student: weight of the student's own loss (the criterion against the labels).
        teacher: weight of a loss that would train the teacher jointly; must be 0 (the teacher is fixed).
    """
    distill: LossWeight
    student: LossWeight
    teacher: LossWeight = 0.0


def check_loss_weights(weights: DistillationLossWeights) -> None:
    """Checks what the weights' types cannot: the teacher is not trained, and some term has weight.

    Raises:
        ArgumentError: ``teacher > 0``, or all weights 0 (``.argument`` is ``'loss_weights'``).
    """
    if weights.teacher > 0:
        raise ArgumentError(f"loss_weights.teacher is {weights.teacher}, but the teacher is not trained (its "
                            "outputs are computed without gradients, as in Distiller): set it to 0",
                            argument="loss_weights", location=("teacher",))
    if weights.distill == 0 and weights.student == 0:
        raise ArgumentError("loss_weights are all 0: nothing would be trained; give distill and/or student a "
                            "positive weight (e.g. distill: 0.5, student: 0.5)", argument="loss_weights")


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(teacher / T) ‖ softmax(student / T))``, averaged over the batch (Hinton et al. 2015).

    Args:
        student_logits: ``(N, C, ...)`` logits of the student (class dimension 1).
        teacher_logits: the teacher's logits, same shape.
        temperature: ``T > 0``; higher values soften both distributions.
    Returns:
        a scalar tensor, differentiable with respect to ``student_logits``.
    """
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    teacher_probs = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher_probs, reduction="batchmean") * (temperature * temperature)
