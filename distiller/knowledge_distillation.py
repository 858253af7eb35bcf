"""Knowledge distillation: a student learns from a trained teacher while it trains (or is compressed).

Hinton, Vinyals & Dean, *Distilling the Knowledge in a Neural Network* (arXiv:1503.02531): the training loss
becomes ``student_wt · loss + distill_wt · T² · KL(softmax(teacher / T) ‖ softmax(student / T))``. Optionally,
intermediate outputs of the student learn the teacher's too (hints, Romero et al. 2015, *FitNets*,
arXiv:1412.6550; see :mod:`distiller.distillation.hints`).

The policy needs no change to a training loop that calls the scheduler's callbacks: while it is active, a
forward hook on the student runs the teacher on the same inputs after each training-mode forward pass, and
:meth:`KnowledgeDistillationPolicy.before_backward_pass` returns the combined loss. Distiller's
``policy.forward(x)`` keeps working in place of ``model(x)``. Evaluation (``student.eval()``) never runs the
teacher, and outside its epochs the policy adds nothing. From Python::

    kd = distiller.KnowledgeDistillationPolicy(student, teacher, temperature=4.0,
                                               loss_weights=distiller.DistillationLossWeights(0.7, 0.3, 0.0))
    scheduler.add_policy(kd, starting_epoch=0, ending_epoch=epochs)

or from a schedule, with the teacher given by architecture and checkpoint (:class:`KnowledgeDistillation`).
"""
from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from .cli.common import non_negative_int, positive_float
from .distillation.hints import Hint, HintLayers, add_owned_param_group
from .distillation.loss import DistillationLossWeights, check_loss_weights, soft_target_loss
from .distillation.teacher import TeacherSpec, build_teacher, check_same_outputs
from .errors import ArgumentError
from .models import dataset_input_shape
from .policy import LossComponent, MaskDict, Meta, PolicyLoss, ScheduledTrainingPolicy
from .registry import register_distiller
from .schedule_spec import PolicySchedule
from .spec import PositiveReal, validated
from .utils import model_device

__all__ = ["KnowledgeDistillationPolicy", "KnowledgeDistillation", "DistillationLossWeights", "Hint", "TeacherSpec",
           "add_distillation_args", "policy_from_args"]

_DEFAULT_WEIGHTS = DistillationLossWeights(distill=0.5, student=0.5, teacher=0.0)


@dataclass
class _Outputs:
    """What one training forward pass produced, for the next :meth:`before_backward_pass`."""
    student: torch.Tensor
    teacher: torch.Tensor
    student_features: dict[int, Any]
    teacher_features: dict[int, Any]


class KnowledgeDistillationPolicy(ScheduledTrainingPolicy):
    """Adds the teacher's soft targets (and optional hints) to the student's loss in its scheduled epochs.

    The loss :meth:`before_backward_pass` returns is ``student · loss + distill · T² · KL`` plus, for each hint,
    ``weight · MSE(adapter(student feature), teacher feature)``; its components are these terms as they enter
    the sum (``'Student Loss'``, ``'Distillation Loss'``, ``'Hint Loss (a -> b)'``). ``loss`` is the loss the
    scheduler passes on: schedule this policy before regularizers, or their terms are weighted by ``student``.

    Args:
        student_model: the model being trained.
        teacher_model: the trained teacher; it runs in eval mode without gradients and is never changed.
        temperature: the softmax temperature ``T`` (> 0).
        loss_weights: a :class:`DistillationLossWeights` (or a ``{distill, student, teacher}`` mapping).
        hints: :class:`Hint` module pairs for feature distillation; need ``dummy_input`` and ``optimizer``.
        optimizer: the training optimizer; the hint adapters are added to it as a parameter group once (create
            LR schedulers afterwards, so they see the group).
        dummy_input: an input batch (e.g. ``torch.zeros(1, 3, 32, 32)``) run once through both models to check
            their outputs and size the adapters; without it the outputs are checked on the first batch.
        name: the policy's name, which marks its optimizer group in checkpoints.
        student_name, teacher_name: how messages name the models (default: their class names).
    Raises:
        ArgumentError: a bad temperature or weight, ``loss_weights.teacher > 0``, all weights 0, a hint module
            the model lacks, outputs of different shapes (naming both models), hints without ``dummy_input`` or
            ``optimizer``.
    """

    @validated
    def __init__(self, student_model: nn.Module, teacher_model: nn.Module, temperature: PositiveReal = 1.0,
                 loss_weights: DistillationLossWeights = _DEFAULT_WEIGHTS, hints: Sequence[Hint] = (),
                 optimizer: Optional[torch.optim.Optimizer] = None, dummy_input: Any = None,
                 name: str = "knowledge_distillation", student_name: Optional[str] = None,
                 teacher_name: Optional[str] = None) -> None:
        super().__init__()
        check_loss_weights(loss_weights)
        self.student, self.teacher = student_model, teacher_model.eval()
        self.temperature, self.loss_wts, self.name = temperature, loss_weights, name
        self.student_name = f"student {student_name or f'({type(student_model).__name__})'}"
        self.teacher_name = f"teacher {teacher_name or f'({type(teacher_model).__name__})'}"
        self.hint_layers = HintLayers(student_model, self.teacher, hints)
        self._hooks: Optional[contextlib.ExitStack] = None
        self._outputs: Optional[_Outputs] = None
        if hints and (dummy_input is None or optimizer is None):
            missing = " and ".join(n for n, v in (("dummy_input", dummy_input), ("optimizer", optimizer)) if v is None)
            raise ArgumentError(f"hints need {missing}: the adapters are sized by a forward pass and trained by the "
                                "optimizer", argument="hints")
        if dummy_input is not None:
            self._probe(dummy_input)
        adapters = list(self.hint_layers.adapters.parameters())
        if adapters:
            assert optimizer is not None  # checked with the hints above
            add_owned_param_group(optimizer, name, adapters)

    @property
    def active(self) -> bool:
        """Whether the policy is in one of its epochs (its hooks are installed)."""
        return self._hooks is not None

    def _probe(self, dummy_input: Any) -> None:
        """Runs both models once in eval mode: checks their outputs and sizes the hint adapters."""
        inputs = dummy_input if isinstance(dummy_input, tuple) else (dummy_input,)
        was_training = self.student.training
        self.student.eval()
        try:
            with torch.no_grad(), self.hint_layers.recording() as (ours, theirs):
                student_output, teacher_output = self.student(*inputs), self.teacher(*inputs)
        finally:
            self.student.train(was_training)
        check_same_outputs(student_output, teacher_output, self.student_name, self.teacher_name)
        self.hint_layers.build_adapters(ours, theirs)

    # ------------------------------------------------------------------------------------ the hooks
    def _install(self) -> None:
        stack = contextlib.ExitStack()
        ours, theirs = stack.enter_context(self.hint_layers.recording())

        def after_student_forward(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                                  output: Any) -> None:
            if not module.training:
                return
            with torch.no_grad():
                teacher_output = self.teacher(*args, **kwargs)
            student_logits, teacher_logits = check_same_outputs(output, teacher_output, self.student_name,
                                                                self.teacher_name)
            self._outputs = _Outputs(student_logits, teacher_logits, dict(ours), dict(theirs))

        stack.enter_context(self.student.register_forward_hook(after_student_forward, with_kwargs=True))
        self._hooks = stack

    def remove(self) -> None:
        """Removes the policy's hooks from the student and the teacher and drops the recorded outputs."""
        if self._hooks is not None:
            self._hooks.close()
        self._hooks, self._outputs = None, None

    def forward(self, *inputs: Any) -> Any:
        """The student's output (Distiller's API, in place of ``model(x)``): the teacher runs once, from the hook,
        when the policy is active and the student is training."""
        return self.student(*inputs)

    # -------------------------------------------------------------------------------- callbacks
    def on_epoch_begin(self, model: nn.Module, zeros_mask_dict: MaskDict, meta: Meta, **kwargs: Any) -> None:
        self.teacher.eval()
        if self._hooks is None:
            self._install()

    def before_backward_pass(self, model: nn.Module, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                             loss: torch.Tensor, zeros_mask_dict: MaskDict,
                             optimizer: Optional[torch.optim.Optimizer] = None) -> Optional[PolicyLoss]:
        outputs, self._outputs = self._outputs, None
        if outputs is None:
            raise RuntimeError("KnowledgeDistillationPolicy: no training-mode forward pass of the student since the "
                               "last backward pass; call scheduler.on_epoch_begin(epoch) before the epoch and run "
                               "the student (in train mode) before before_backward_pass")
        distillation = soft_target_loss(outputs.student, outputs.teacher, self.temperature)
        components = [LossComponent("Student Loss", self.loss_wts.student * loss),
                      LossComponent("Distillation Loss", self.loss_wts.distill * distillation)]
        components += [LossComponent(name, value) for name, value in
                       self.hint_layers.losses(outputs.student_features, outputs.teacher_features)]
        return PolicyLoss(sum((c.value for c in components[1:]), components[0].value), components)

    def on_epoch_end(self, model: nn.Module, zeros_mask_dict: MaskDict, meta: Meta, **kwargs: Any) -> None:
        self.remove()

    def state_dict(self) -> dict[str, Any]:
        return {"adapters": self.hint_layers.state_dict()} if self.hint_layers.adapters else {}

    def load_state_dict(self, state: Any) -> None:
        if "adapters" in state or self.hint_layers.adapters:
            self.hint_layers.load_state_dict(state.get("adapters", {}))


@register_distiller
class KnowledgeDistillation(KnowledgeDistillationPolicy):
    """Knowledge distillation from a schedule: the teacher is an architecture with trained weights.

    The teacher is built with ``distiller.models.create_model`` on the student's device and loaded strictly
    from ``teacher.checkpoint`` (or takes the published weights with ``pretrained: true``); both models run
    once on a zero batch of the dataset's input shape to check that their outputs agree and to size the hint
    adapters. Schedule it with ``- distiller: {instance_name: kd}`` and the epochs it is active in.

    YAML::

        kd:
          class: KnowledgeDistillation
          teacher: {arch: resnet20_cifar, dataset: digits, checkpoint: teacher.pth.tar}
          temperature: 4.0
          loss_weights: {distill: 0.7, student: 0.3, teacher: 0.0}
          hints:
            - {student: relu1, teacher: layer1, weight: 0.5}

    Args:
        name, model, optimizer: supplied by the schedule loader (the instance name, the student, its optimizer).
        teacher: a :class:`TeacherSpec`: ``{arch, dataset, checkpoint}`` or ``{arch, dataset, pretrained: true}``.
        temperature, loss_weights, hints: as for :class:`KnowledgeDistillationPolicy`.
    Raises:
        ArgumentError: as for :class:`KnowledgeDistillationPolicy`; a teacher without trained weights.
        CheckpointError: a teacher checkpoint of another architecture (naming both) or that does not fit it.
        InputFileError: the teacher checkpoint does not exist.
    """

    @validated
    def __init__(self, name: str, model: nn.Module, optimizer: Optional[torch.optim.Optimizer], teacher: TeacherSpec,
                 temperature: PositiveReal = 1.0, loss_weights: DistillationLossWeights = _DEFAULT_WEIGHTS,
                 hints: Sequence[Hint] = (), student_name: Optional[str] = None) -> None:
        device = model_device(model)
        super().__init__(model, build_teacher(teacher, device), temperature, loss_weights, hints, optimizer,
                         dummy_input=torch.zeros(dataset_input_shape(teacher.dataset), device=device), name=name,
                         student_name=student_name, teacher_name=f"'{teacher.arch}'")


def add_distillation_args(argparser: argparse.ArgumentParser, arch_choices: Optional[Sequence[str]] = None,
                          enable_pretrained: bool = False) -> argparse._ArgumentGroup:
    """Adds Distiller's knowledge-distillation flags (``--kd-teacher``, ``--kd-resume``, ``--kd-temperature``,
    ``--kd-distill-wt``, ``--kd-student-wt``, ``--kd-teacher-wt``, ``--kd-start-epoch`` and, with
    ``enable_pretrained``, ``--kd-pretrained``) as one argument group; read them with :func:`policy_from_args`."""
    group = argparser.add_argument_group("Knowledge Distillation Training Arguments")
    group.add_argument("--kd-teacher", choices=arch_choices, metavar="ARCH",
                       help="Model architecture for teacher model")
    if enable_pretrained:
        group.add_argument("--kd-pretrained", action="store_true", help="Use pre-trained model for teacher")
    group.add_argument("--kd-resume", metavar="PATH", help="Path to checkpoint from which to load teacher weights")
    group.add_argument("--kd-temperature", "--kd-temp", dest="kd_temp", type=positive_float, default=1.0,
                       metavar="TEMP", help="Knowledge distillation softmax temperature")
    for flag, short, default, what in (("distill", "dw", 0.5, "distillation loss (student vs. teacher soft targets)"),
                                       ("student", "sw", 0.5, "student vs. labels loss"),
                                       ("teacher", "tw", 0.0, "teacher vs. labels loss (must be 0)")):
        group.add_argument(f"--kd-{flag}-wt", f"--kd-{short}", type=float, default=default, metavar="WEIGHT",
                           help=f"Weight for {what}")
    group.add_argument("--kd-start-epoch", type=non_negative_int, default=0, metavar="EPOCH_NUM",
                       help="Epoch from which to enable distillation")
    return group


def policy_from_args(student: nn.Module, args: argparse.Namespace, dataset: str
                     ) -> Optional[tuple[KnowledgeDistillation, PolicySchedule]]:
    """The distillation policy that the ``--kd-*`` flags describe, and the epochs to schedule it in
    (``--kd-start-epoch`` to ``--epochs``); None without ``--kd-teacher``. Schedule it with
    ``scheduler.add_policy(policy, name=policy.name, schedule=schedule)``.

    Raises:
        ArgumentError: ``--kd-*`` flags without ``--kd-teacher``; ``--kd-start-epoch`` not before ``--epochs``;
            bad weights or temperature; a teacher without weights (neither ``--kd-resume`` nor ``--kd-pretrained``).
        CheckpointError, InputFileError: as for :class:`KnowledgeDistillation`.
    """
    if not args.kd_teacher:
        if args.kd_resume or getattr(args, "kd_pretrained", False):
            raise ArgumentError("--kd-resume/--kd-pretrained give the teacher's weights: add --kd-teacher ARCH")
        return None
    if args.kd_start_epoch >= args.epochs:
        raise ArgumentError(f"--kd-start-epoch {args.kd_start_epoch} is not before --epochs {args.epochs}: "
                            "distillation would never run")
    teacher = TeacherSpec(args.kd_teacher, dataset, args.kd_resume or None, getattr(args, "kd_pretrained", False))
    weights = DistillationLossWeights(args.kd_distill_wt, args.kd_student_wt, args.kd_teacher_wt)
    policy = KnowledgeDistillation("knowledge_distillation", student, None, teacher, args.kd_temp, weights,
                                   student_name=f"'{args.arch}'" if getattr(args, "arch", None) else None)
    return policy, PolicySchedule(starting_epoch=args.kd_start_epoch, ending_epoch=args.epochs)
