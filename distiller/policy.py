"""Policies: what the scheduler runs at each training-loop callback.

A policy ties one algorithm instance (a pruner, a regularizer, a quantizer, an LR scheduler, an
extension) to the training loop. The :class:`~distiller.CompressionScheduler` decides *when* a policy
runs (its epochs); the policy decides *what* happens at each callback. The built-in schedule sections
are registered at the end of this module (:func:`distiller.registry.register_section`).
"""
from __future__ import annotations

import dataclasses
import logging
from collections import namedtuple
from collections.abc import Mapping
from typing import Any, Optional, Union

import torch

from .errors import ArgumentError
from .masking import named_scheduled_parameters
from .registry import (DISTILLERS, EXTENSIONS, LR_SCHEDULERS, PRUNERS, QUANTIZERS, REGULARIZERS, Section,
                       refuse_untrainable, register_section)
from .schedule_spec import PolicyContext, PruningPolicyArgs, RegularizationPolicyArgs
from .spec import build_record
from .utils import match_names

msglogger = logging.getLogger(__name__)

__all__ = ["PolicyLoss", "LossComponent", "ScheduledTrainingPolicy", "PruningPolicy", "RegularizationPolicy",
           "QuantizationPolicy", "LRPolicy", "PolicyContext"]

PolicyLoss = namedtuple("PolicyLoss", ["overall_loss", "loss_components"])
LossComponent = namedtuple("LossComponent", ["name", "value"])
Meta = Mapping[str, Any]  # a PolicyContext, or a dict with the same keys from code written for Distiller
MaskDict = Mapping[str, Any]  # parameter name -> ParameterMasker


def is_last_scheduled_epoch(meta: Meta) -> bool:
    """True at the last epoch the policy runs (``ending_epoch - 1`` is skipped when ``frequency > 1``)."""
    start, end, frequency = meta["starting_epoch"], meta["ending_epoch"], meta["frequency"] or 1
    return bool(meta["current_epoch"] == start + ((end - 1 - start) // frequency) * frequency)


class ScheduledTrainingPolicy:
    """Base class of all policies: every callback is a no-op.

    Args:
        classes: optional module class names (e.g. ``['Conv2d']``) limiting the policy's scope.
        layers: optional module names limiting the policy's scope.
    """

    def __init__(self, classes: Optional[list[str]] = None, layers: Optional[list[str]] = None) -> None:
        self.classes = classes
        self.layers = layers
        #: the parameters the policy acts on, resolved by :meth:`attach` (policies that act on parameters)
        self.param_names: Optional[list[str]] = None

    def attach(self, scheduler: Any) -> None:
        """Called once by :meth:`CompressionScheduler.add_policy`; validates against the model."""

    def on_epoch_begin(self, model: torch.nn.Module, zeros_mask_dict: MaskDict, meta: Meta, **kwargs: Any) -> None:
        """The epoch is starting."""

    def on_minibatch_begin(self, model: torch.nn.Module, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                           zeros_mask_dict: MaskDict, meta: Meta,
                           optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """A mini-batch is starting (before the forward pass)."""

    def before_backward_pass(self, model: torch.nn.Module, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                             loss: torch.Tensor, zeros_mask_dict: MaskDict,
                             optimizer: Optional[torch.optim.Optimizer] = None) -> Optional[PolicyLoss]:
        """Returns a :class:`PolicyLoss` to change the loss, or None."""

    def before_parameter_optimization(self, model: torch.nn.Module, epoch: int, minibatch_id: int,
                                      minibatches_per_epoch: int, zeros_mask_dict: MaskDict, meta: Meta,
                                      optimizer: Optional[torch.optim.Optimizer]) -> None:
        """Gradients are computed; the optimizer step comes next."""

    def on_minibatch_end(self, model: torch.nn.Module, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                         zeros_mask_dict: MaskDict, optimizer: Optional[torch.optim.Optimizer]) -> None:
        """The optimizer step is done."""

    def on_epoch_end(self, model: torch.nn.Module, zeros_mask_dict: MaskDict, meta: Meta, **kwargs: Any) -> None:
        """The epoch has ended."""

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state that a resumed run needs."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned."""

    def _scoped_param_names(self, model: torch.nn.Module, patterns: Any, kind: str) -> list[str]:
        """Resolves ``patterns`` against the parameters in this policy's scope (``classes``/``layers``), by the
        names schedules use (a quantizer's float copy under its weight's name, see :mod:`distiller.masking`)."""
        names = [name for name, _ in named_scheduled_parameters(model)]
        if self.classes or self.layers:
            scope = {module_name for module_name, module in model.named_modules()
                     if (not self.classes or type(module).__name__ in self.classes)
                     and (not self.layers or module_name in self.layers)}
            names = [n for n in names if n.rpartition(".")[0] in scope]
        resolved = match_names(patterns, names, kind)
        return list(dict.fromkeys(n for hits in resolved.values() for n in hits))

    def _params(self, model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        """(name, parameter) for each of ``self.param_names`` still in the model, in that order; under
        quantization-aware training the parameter of ``conv1.weight`` is its float copy ``conv1.float_weight``."""
        params = dict(named_scheduled_parameters(model))
        return [(name, params[name]) for name in self.param_names or [] if name in params]


class PruningPolicy(ScheduledTrainingPolicy):
    """Runs a pruner: sets masks at the scheduled epochs (and optionally every few mini-batches).

    Args:
        pruner: a :class:`~distiller.pruning.ParameterPruner`.
        pruner_args: the policy entry's ``args`` (a mapping or a
            :class:`~distiller.schedule_spec.PruningPolicyArgs`): ``levels``, ``keep_mask``,
            ``mini_batch_pruning_frequency``, ``mask_on_forward_only``, ``mask_gradients``,
            ``use_double_copies``, ``discard_masks_at_minibatch_end``, ``skip_first_minibatch``,
            ``fold_batchnorm``.
    Raises:
        ArgumentError: an unknown or badly typed argument; ``levels`` for a pruner without levels.
    """
    ARGS = dataclasses.asdict(PruningPolicyArgs())

    def __init__(self, pruner: Any, pruner_args: Union[PruningPolicyArgs, Mapping[str, Any], None],
                 classes: Optional[list[str]] = None, layers: Optional[list[str]] = None) -> None:
        super().__init__(classes, layers)
        args = pruner_args if isinstance(pruner_args, PruningPolicyArgs) else \
            build_record(PruningPolicyArgs, dict(pruner_args or {}), "pruning policy")
        self.levels = args.levels
        self.keep_mask = args.keep_mask
        self.mini_batch_pruning_frequency = args.mini_batch_pruning_frequency
        self.mask_on_forward_only = args.mask_on_forward_only
        self.mask_gradients = args.mask_gradients
        self.use_double_copies = args.use_double_copies
        self.discard_masks_at_minibatch_end = args.discard_masks_at_minibatch_end
        self.skip_first_minibatch = args.skip_first_minibatch
        self.fold_batchnorm = args.fold_batchnorm
        self._batchnorm_of: dict[str, torch.nn.Module] = {}  # weight name -> the BatchNorm folded for ranking
        if self.levels is not None:  # before the targets are resolved: the override may name other weights
            if not hasattr(pruner, "levels"):
                raise ArgumentError(f"pruner '{pruner.name}' ({type(pruner).__name__}) has no 'levels' to override",
                                    argument="levels")
            pruner.levels = self.levels
        self.pruner = pruner
        self.is_last_epoch = False
        self._maskers_ready = False  # flags and hooks set up in this process
        self._started = False        # pruning has begun (possibly in the run this one resumes)

    def attach(self, scheduler: Any) -> None:
        self.param_names = self._scoped_param_names(scheduler.model, self.pruner.targets(), "parameter")
        if self.fold_batchnorm:
            from .model_transforms import batchnorms_after  # the quantization package loads on demand only
            self._batchnorm_of = {name: bn for name, bn in batchnorms_after(scheduler.model).items()
                                  if name in self.param_names}
            if not self._batchnorm_of:
                raise ArgumentError(f"pruner '{self.pruner.name}': fold_batchnorm is set, but no BatchNorm directly "
                                    f"follows the layer of any of its weights ({', '.join(self.param_names)}); "
                                    "drop fold_batchnorm", argument="fold_batchnorm")

    def _init_maskers(self, model: torch.nn.Module, zeros_mask_dict: MaskDict) -> None:
        for name, param in self._params(model):
            masker = zeros_mask_dict[name]
            masker.use_double_copies = self.use_double_copies
            masker.mask_on_forward_only = self.mask_on_forward_only
            if self.mask_gradients and masker.backward_hook_handle is None:
                masker.backward_hook_handle = param.register_hook(masker.mask_gradient)
        self._maskers_ready = True

    def _set_masks(self, model: torch.nn.Module, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        for name, param in self._params(model):
            bn = self._batchnorm_of.get(name)
            ranked = param if bn is None else _folded_for_ranking(param, bn)
            self.pruner.set_param_mask(ranked, name, zeros_mask_dict, meta)
            masker = zeros_mask_dict[name]
            if not masker.is_soft:  # soft masks are applied by the scheduler before each forward pass
                masker.mask_tensor(param)

    def on_epoch_begin(self, model: torch.nn.Module, zeros_mask_dict: MaskDict, meta: Meta, **kwargs: Any) -> None:
        self.is_last_epoch = is_last_scheduled_epoch(meta)
        if not self._maskers_ready:
            self._init_maskers(model, zeros_mask_dict)
        if not self._started:
            self._started = True
            if self.skip_first_minibatch:
                return
        self._set_masks(model, zeros_mask_dict, meta)

    def on_minibatch_begin(self, model: torch.nn.Module, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                           zeros_mask_dict: MaskDict, meta: Meta,
                           optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        step = epoch * minibatches_per_epoch + minibatch_id
        due = (minibatch_id > 0 and self.mini_batch_pruning_frequency
               and step % self.mini_batch_pruning_frequency == 0)
        if due or (self.skip_first_minibatch and step == 1):
            now = epoch + minibatch_id / minibatches_per_epoch
            meta = meta.at_epoch(now) if isinstance(meta, PolicyContext) else dict(meta, current_epoch=now)
            self._set_masks(model, zeros_mask_dict, meta)

    def on_minibatch_end(self, model: torch.nn.Module, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                         zeros_mask_dict: MaskDict, optimizer: Optional[torch.optim.Optimizer]) -> None:
        if self.discard_masks_at_minibatch_end:
            for name, _ in self._params(model):
                zeros_mask_dict[name].mask = None

    def on_epoch_end(self, model: torch.nn.Module, zeros_mask_dict: MaskDict, meta: Meta, **kwargs: Any) -> None:
        if not self.is_last_epoch:
            return
        for name, param in self._params(model):
            masker = zeros_mask_dict[name]
            if self.keep_mask:
                masker.use_double_copies = masker.mask_on_forward_only = False
                masker.mask_tensor(param)
            if masker.backward_hook_handle is not None:
                masker.backward_hook_handle.remove()
                masker.backward_hook_handle = None

    def state_dict(self) -> dict[str, Any]:
        return {"started": self._started, "pruner": self.pruner.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # Masker flags and gradient hooks are re-created at the next epoch begin.
        self._started = bool(state.get("started", False))
        self.pruner.load_state_dict(state.get("pruner", {}))


class RegularizationPolicy(ScheduledTrainingPolicy):
    """Adds a regularizer's term to the loss; with thresholding, zeroes small groups after each step.

    Args:
        regularizer: a :class:`~distiller.regularization.Regularizer`.
        keep_mask: keep the thresholding mask permanently after the policy's last mini-batch.
    """

    def __init__(self, regularizer: Any, keep_mask: bool = False) -> None:
        super().__init__()
        self.regularizer = regularizer
        self.keep_mask = build_record(RegularizationPolicyArgs, {"keep_mask": keep_mask}, "regularization policy"
                                      ).keep_mask
        self.is_last_epoch = False

    def attach(self, scheduler: Any) -> None:
        self.param_names = self._scoped_param_names(scheduler.model, self.regularizer.targets(), "parameter")

    def on_epoch_begin(self, model: torch.nn.Module, zeros_mask_dict: MaskDict, meta: Meta, **kwargs: Any) -> None:
        self.is_last_epoch = is_last_scheduled_epoch(meta)

    def on_minibatch_begin(self, model: torch.nn.Module, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                           zeros_mask_dict: MaskDict, meta: Meta,
                           optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        self.regularizer.on_minibatch_begin(model, zeros_mask_dict)

    def before_backward_pass(self, model: torch.nn.Module, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                             loss: torch.Tensor, zeros_mask_dict: MaskDict,
                             optimizer: Optional[torch.optim.Optimizer] = None) -> Optional[PolicyLoss]:
        regularizer_loss = torch.zeros((), dtype=loss.dtype, device=loss.device)
        for name, param in self._params(model):
            regularizer_loss = self.regularizer.loss(param, name, regularizer_loss, zeros_mask_dict)
        component = LossComponent(f"{type(self.regularizer).__name__}_loss", regularizer_loss)
        return PolicyLoss(loss + regularizer_loss, [component])

    def on_minibatch_end(self, model: torch.nn.Module, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                         zeros_mask_dict: MaskDict, optimizer: Optional[torch.optim.Optimizer]) -> None:
        if self.regularizer.threshold_criteria is None:
            return
        keep = self.keep_mask and self.is_last_epoch and minibatch_id == minibatches_per_epoch - 1
        for name, param in self._params(model):
            self.regularizer.threshold(param, name, zeros_mask_dict)
            masker = zeros_mask_dict[name]
            masker.is_regularization_mask = not keep
            masker.apply_mask(param)
        if keep:
            msglogger.info("%s: keeping the regularization masks", self.regularizer.name)

    def state_dict(self) -> dict[str, Any]:
        return {"regularizer": self.regularizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.regularizer.load_state_dict(state.get("regularizer", {}))


class QuantizationPolicy(ScheduledTrainingPolicy):
    """Quantization-aware training: prepares the model once, re-quantizes weights after each step.

    When attached to a scheduler, records the quantizer (``scheduler.record_transform('quantization',
    ...)``), so ``load_checkpoint`` can rebuild the quantized model before loading its weights.

    Raises:
        ArgumentError: the quantizer is registered as post-training only (``trains=False``).
    """

    def __init__(self, quantizer: Any) -> None:
        super().__init__()
        refuse_untrainable(QUANTIZERS, quantizer)
        self.quantizer = quantizer
        self.quantizer.prepare_model()
        self.quantizer.quantize_params()

    def attach(self, scheduler: Any) -> None:
        scheduler.record_transform("quantization", {"quantizer": self.quantizer.state_dict()})

    def on_minibatch_end(self, model: torch.nn.Module, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                         zeros_mask_dict: MaskDict, optimizer: Optional[torch.optim.Optimizer]) -> None:
        # Quantize after every step, so the model is quantized at validation time and at the end.
        self.quantizer.quantize_params()


class LRPolicy(ScheduledTrainingPolicy):
    """Steps a ``torch.optim.lr_scheduler`` at each scheduled epoch's end.

    ``ReduceLROnPlateau`` is fed from ``on_epoch_end(..., metrics={'min': val_loss, 'max': top1})``:
    its ``mode`` picks the metric.
    """

    def __init__(self, lr_scheduler: Any) -> None:
        super().__init__()
        self.lr_scheduler = lr_scheduler

    def on_epoch_end(self, model: torch.nn.Module, zeros_mask_dict: MaskDict, meta: Meta, **kwargs: Any) -> None:
        if isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            metrics = kwargs.get("metrics")
            if not metrics or self.lr_scheduler.mode not in metrics:
                raise ArgumentError("ReduceLROnPlateau needs on_epoch_end(..., metrics={'min': loss, 'max': top1}) "
                                    f"with a '{self.lr_scheduler.mode}' entry")
            self.lr_scheduler.step(metrics[self.lr_scheduler.mode])
        else:
            self.lr_scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"lr_scheduler": self.lr_scheduler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "lr_scheduler" not in state:
            return
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        # Re-creating the LR scheduler reset the optimizer's learning rates: put back the resumed ones.
        for group, lr in zip(self.lr_scheduler.optimizer.param_groups, self.lr_scheduler.get_last_lr()):
            group["lr"] = lr


def _folded_for_ranking(weight: torch.Tensor, bn: Any) -> torch.Tensor:
    """``weight`` scaled per output channel as folding ``bn`` into its layer would (a detached copy)."""
    with torch.no_grad():
        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
        scale = gamma / torch.sqrt(bn.running_var + bn.eps)
        return weight.detach() * scale.reshape(-1, *([1] * (weight.dim() - 1)))


def _instance_policy(instance: Any, args: Any) -> Any:
    """Extensions and distillers are policies themselves."""
    return instance


# The built-in schedule sections, in the order their instances are built. A new section registers the
# same way from user code (see distiller.registry.register_section). Distillers come before LR schedulers:
# they may add parameter groups (hint adapters) to the optimizer, which a learning-rate scheduler must see
# when it is built.
register_section(Section("pruners", "pruner", PRUNERS, PruningPolicy, PruningPolicyArgs))
register_section(Section("regularizers", "regularizer", REGULARIZERS,
                         lambda regularizer, args: RegularizationPolicy(regularizer, args.keep_mask),
                         RegularizationPolicyArgs))
register_section(Section("quantizers", "quantizer", QUANTIZERS, lambda quantizer, args: QuantizationPolicy(quantizer)))
register_section(Section("distillers", "distiller", DISTILLERS, _instance_policy))
register_section(Section("lr_schedulers", "lr_scheduler", LR_SCHEDULERS, lambda lr, args: LRPolicy(lr)))
register_section(Section("extensions", "extension", EXTENSIONS, _instance_policy))
