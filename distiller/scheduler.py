"""The CompressionScheduler: runs the scheduled policies from the training loop's callbacks.

A training loop calls six callbacks; the scheduler forwards each one to the policies active in that
epoch and keeps the pruning masks applied::

    for epoch in range(epochs):
        scheduler.on_epoch_begin(epoch)
        for i, (x, y) in enumerate(loader):
            scheduler.on_minibatch_begin(epoch, i, len(loader), optimizer)
            loss = criterion(model(x), y)
            loss = scheduler.before_backward_pass(epoch, i, len(loader), loss, optimizer)
            optimizer.zero_grad(); loss.backward()
            scheduler.before_parameter_optimization(epoch, i, len(loader), optimizer)
            optimizer.step()
            scheduler.on_minibatch_end(epoch, i, len(loader), optimizer)
        scheduler.on_epoch_end(epoch, optimizer, metrics={'min': val_loss, 'max': top1})

Masks are re-applied after every optimizer step (momentum and weight decay would otherwise revive
pruned weights) with one fused in-place multiply over all masked parameters.
"""
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional, Union

import torch
from torch.optim import Optimizer

from .errors import CheckpointError
from .masking import MaskDict, ParameterMasker, create_model_masks_dict, float_copy_aliases, mask_multiplier
from .policy import LossComponent, PolicyLoss, ScheduledTrainingPolicy
from .schedule_spec import PolicyContext, PolicySchedule
from .utils import model_device, normalize_module_name

msglogger = logging.getLogger(__name__)

__all__ = ["ParameterMasker", "CompressionScheduler", "create_model_masks_dict", "PolicyLoss", "LossComponent"]

#: (parameters, their masks' uint8 views, (parameter, masker) pairs with bit-packed masks)
_MaskedParams = tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[torch.Tensor, ParameterMasker]]]


class CompressionScheduler:
    """Schedules compression policies by epoch and forwards the training-loop callbacks to them.

    The scheduler owns the run's compression state: the masks, the policies and their schedules, the log
    of structural changes (:attr:`model_transforms`, written only through :meth:`record_transform`) and
    the schedule's YAML text; :meth:`state_dict` holds all of it as plain data.

    Args:
        model: the model being compressed.
        zeros_mask_dict: name -> ParameterMasker (created when not given).
        device: where masks live; taken from the model when not given.
    """

    def __init__(self, model: torch.nn.Module, zeros_mask_dict: Optional[Mapping[str, ParameterMasker]] = None,
                 device: Union[str, torch.device, None] = None) -> None:
        self.model = model
        self.device = torch.device(device) if device is not None else model_device(model)
        #: epoch -> the policies active in it, in scheduling order.
        self.policies: dict[int, list[ScheduledTrainingPolicy]] = {}
        self.zeros_mask_dict = zeros_mask_dict if isinstance(zeros_mask_dict, MaskDict) else \
            create_model_masks_dict(model) if zeros_mask_dict is None else MaskDict(zeros_mask_dict)
        self.zeros_mask_dict.aliases = float_copy_aliases(model)
        #: The YAML text of the schedule(s) the policies were built from (set by ``file_config`` /
        #: ``dict_config``; several schedules are separate YAML documents), saved in checkpoints so a
        #: resumed run can rebuild the same policies. None when the policies did not come from a schedule.
        self.schedule_yaml: Optional[str] = None
        self._transforms: list[dict[str, Any]] = []
        self._params_by_mask_name = dict(model.named_parameters())
        self._named_policies: dict[str, ScheduledTrainingPolicy] = {}
        self._bounds: dict[ScheduledTrainingPolicy, tuple[int, int, Optional[int]]] = {}  # (start, end, frequency)
        self._pending_policy_states: dict[str, Any] = {}
        #: Called with the scheduler after each callback in which some policy ran, to keep the masks identical
        #: across the processes of a distributed run (see :class:`distiller.apputils.distributed.MaskBroadcaster`);
        #: None outside one.
        self.mask_sync: Optional[Callable[[CompressionScheduler], None]] = None
        self._fused_cache: Optional[tuple[int, _MaskedParams]] = None

    # ----------------------------------------------------------------------------------- policies
    def add_policy(self, policy: ScheduledTrainingPolicy, epochs: Optional[list[int]] = None, starting_epoch: int = 0,
                   ending_epoch: int = 1, frequency: int = 1, *, name: Optional[str] = None,
                   schedule: Optional[PolicySchedule] = None) -> None:
        """Schedules ``policy`` on ``epochs`` (a list) or on ``range(starting_epoch, ending_epoch, frequency)``.

        Args:
            name: the policy's name in checkpoints (schedules use the instance name); by default its class
                name. A repeated name gets ``#2``, ``#3``, ... in scheduling order.
            schedule: the epochs as an already validated record (as :mod:`distiller.config` builds them),
                instead of ``epochs``/``starting_epoch``/``ending_epoch``/``frequency``.
        Raises:
            ArgumentError: an empty or inverted epoch range, or (through the policy) parameter names that
                match nothing in the model.
            CheckpointError: a resumed state saved under this name belongs to another kind of policy.
        """
        if schedule is None:
            schedule = PolicySchedule(epochs=epochs) if epochs is not None else \
                PolicySchedule(starting_epoch=starting_epoch, ending_epoch=ending_epoch, frequency=frequency)
        name = self._unique_name(name or type(policy).__name__)
        policy.attach(self)
        for epoch in schedule.epoch_list():
            self.policies.setdefault(epoch, []).append(policy)
        self._bounds[policy] = schedule.bounds()
        self._named_policies[name] = policy
        if name in self._pending_policy_states:
            self._restore_policy_state(name, policy, self._pending_policy_states.pop(name))

    @property
    def unclaimed_policy_states(self) -> dict[str, str]:
        """name -> class of the loaded policy states that no added policy has claimed yet (their policies
        are added when the schedule is rebuilt on resume)."""
        return {name: state["class"] for name, state in self._pending_policy_states.items()}

    @property
    def sched_metadata(self) -> dict[ScheduledTrainingPolicy, dict[str, Optional[int]]]:
        """policy -> ``{'starting_epoch', 'ending_epoch', 'frequency'}`` (Distiller's attribute)."""
        return {policy: dict(zip(("starting_epoch", "ending_epoch", "frequency"), bounds))
                for policy, bounds in self._bounds.items()}

    def _unique_name(self, name: str) -> str:
        unique, count = name, 1
        while unique in self._named_policies:
            count += 1
            unique = f"{name}#{count}"
        return unique

    def _meta(self, policy: ScheduledTrainingPolicy, epoch: int, optimizer: Optional[Optimizer]) -> PolicyContext:
        start, end, every = self._bounds[policy]
        return PolicyContext(starting_epoch=start, ending_epoch=end, frequency=every, current_epoch=epoch,
                             model=self.model, optimizer=optimizer, scheduler=self)

    def _active(self, epoch: int) -> list[ScheduledTrainingPolicy]:
        return self.policies.get(epoch, [])

    # ---------------------------------------------------------------------------------- callbacks
    def on_epoch_begin(self, epoch: int, optimizer: Optional[Optimizer] = None, **kwargs: Any) -> None:
        self._fused_cache = None
        for policy in self._active(epoch):
            policy.on_epoch_begin(self.model, self.zeros_mask_dict, self._meta(policy, epoch, optimizer),
                                  optimizer=optimizer, **kwargs)
        self._sync_masks(epoch)

    def on_minibatch_begin(self, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                           optimizer: Optional[Optimizer] = None) -> None:
        for policy in self._active(epoch):
            policy.on_minibatch_begin(self.model, epoch, minibatch_id, minibatches_per_epoch,
                                      self.zeros_mask_dict, self._meta(policy, epoch, optimizer), optimizer)
        self._sync_masks(epoch)
        self._apply_soft_masks()

    def before_backward_pass(self, epoch: int, minibatch_id: int, minibatches_per_epoch: int, loss: torch.Tensor,
                             optimizer: Optional[Optimizer] = None,
                             return_loss_components: bool = False) -> Union[torch.Tensor, PolicyLoss]:
        """Lets policies add loss terms (regularization, distillation); returns the overall loss
        (or a :class:`PolicyLoss` with the components when ``return_loss_components``)."""
        overall_loss, components = loss, list[LossComponent]()
        for policy in self._active(epoch):
            policy_loss = policy.before_backward_pass(self.model, epoch, minibatch_id, minibatches_per_epoch,
                                                      overall_loss, self.zeros_mask_dict, optimizer)
            if policy_loss is not None:
                overall_loss = policy_loss.overall_loss
                components.extend(policy_loss.loss_components)
        return PolicyLoss(overall_loss, components) if return_loss_components else overall_loss

    def before_parameter_optimization(self, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                                      optimizer: Optional[Optimizer]) -> None:
        for name, param in self.model.named_parameters():
            masker = self.zeros_mask_dict.get(name)
            if masker is not None and masker.use_double_copies:
                masker.revert_weights(param)
        for policy in self._active(epoch):
            policy.before_parameter_optimization(self.model, epoch, minibatch_id, minibatches_per_epoch,
                                                 self.zeros_mask_dict, self._meta(policy, epoch, optimizer),
                                                 optimizer)
        self._sync_masks(epoch)

    def on_minibatch_end(self, epoch: int, minibatch_id: int, minibatches_per_epoch: int,
                         optimizer: Optional[Optimizer] = None) -> None:
        # The optimizer step may have moved masked weights (momentum, weight decay): mask them again.
        self.mask_all_weights(is_forward=False)
        for policy in self._active(epoch):
            policy.on_minibatch_end(self.model, epoch, minibatch_id, minibatches_per_epoch,
                                    self.zeros_mask_dict, optimizer)
        self._sync_masks(epoch)

    def on_epoch_end(self, epoch: int, optimizer: Optional[Optimizer] = None, **kwargs: Any) -> None:
        for policy in self._active(epoch):
            policy.on_epoch_end(self.model, self.zeros_mask_dict, self._meta(policy, epoch, optimizer),
                                optimizer=optimizer, **kwargs)
        self._sync_masks(epoch)

    def _sync_masks(self, epoch: int) -> None:
        if self.mask_sync is not None and self._active(epoch):
            self.mask_sync(self)

    # ------------------------------------------------------------------------------------ masking
    def _masked_params(self, include_soft: bool) -> _MaskedParams:
        """The masked parameters: those with bool masks (with their uint8 views, for the fused multiply) and
        those whose masks are bit-packed (unpacked one at a time)."""
        params: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        packed: list[tuple[torch.Tensor, ParameterMasker]] = []
        for name, param in self.model.named_parameters():
            masker = self.zeros_mask_dict.get(name)
            if masker is None or (masker.is_soft and not include_soft):
                continue
            if masker.packed:
                if masker.has_mask:
                    packed.append((param, masker))
                continue
            mask = masker.mask
            if mask is not None:
                params.append(param)
                masks.append(mask_multiplier(mask))
        return params, masks, packed

    def mask_all_weights(self, is_forward: bool = True) -> None:
        """Multiplies every masked parameter by its mask (soft masks only when ``is_forward``).

        All multiplications by bool masks run as one fused ``torch._foreach_mul_`` (by the masks' uint8
        views); the parameter/mask lists are cached until a mask changes or an epoch begins. Bit-packed masks
        (:attr:`~distiller.ParameterMasker.packed`) are unpacked and applied one parameter at a time.
        """
        if is_forward:
            params, masks, packed = self._masked_params(include_soft=True)
        else:
            key = self.zeros_mask_dict.version
            if self._fused_cache is None or self._fused_cache[0] != key:
                self._fused_cache = (key, self._masked_params(include_soft=False))
            params, masks, packed = self._fused_cache[1]
        if params:
            with torch.no_grad():
                torch._foreach_mul_(params, masks)
        for param, masker in packed:
            masker.mask_tensor(param)

    @contextlib.contextmanager
    def soft_masks_applied(self) -> Iterator[None]:
        """Within the block, weights are what training forward passes see: forward-only masks
        (``mask_on_forward_only``, ``use_double_copies``) are multiplied in and the unmasked weights are
        restored on exit. Use it around evaluation and sparsity statistics of a soft-pruned model::

            with scheduler.soft_masks_applied():
                top1 = evaluate(model, test_loader)
        """
        soft = list(self._soft_maskers())
        saved = [param.detach().clone() for param, _ in soft]
        with torch.no_grad():
            for param, masker in soft:
                masker.mask_tensor(param)
        try:
            yield
        finally:
            with torch.no_grad():
                for (param, _), unmasked in zip(soft, saved):
                    param.copy_(unmasked)

    def _soft_maskers(self) -> Iterator[tuple[torch.nn.Parameter, ParameterMasker]]:
        """(parameter, masker) for every parameter with a forward-only mask."""
        for name, param in self.model.named_parameters():
            masker = self.zeros_mask_dict.get(name)
            if masker is not None and masker.has_mask and masker.is_soft:
                yield param, masker

    def _apply_soft_masks(self) -> None:
        for param, masker in self._soft_maskers():
            masker.apply_mask(param)

    # --------------------------------------------------------------------------- structural changes
    @property
    def model_transforms(self) -> list[dict[str, Any]]:
        """The structural changes made to the model (thinning, quantization), in order, as plain-data
        records that ``load_checkpoint`` replays on a freshly built model before loading its weights. A
        copy: add records with :meth:`record_transform`."""
        return [dict(record) for record in self._transforms]

    def record_transform(self, kind: str, payload: Mapping[str, Any], *, keep_masks: bool = True) -> None:
        """Logs a structural change just made to the model, and keeps the masks on their parameters.

        The record ``{'kind': kind, **payload}`` (plain data, re-applied by the replayer registered for
        ``kind`` in :data:`distiller.registry.MODEL_TRANSFORMS`) is appended unless an identical record is
        there already (a schedule re-applied on resume). Masks follow their parameter object to its new
        name: a quantizer wrapping ``conv1`` turns ``conv1.weight`` into ``conv1.wrapped_module.weight``,
        quantization-aware training into ``conv1.float_weight``. So the masks keep applying, and checkpoints
        name them as the transformed model does; the mask dict still answers a float copy's masker under the
        quantized weight's name (``zeros_mask_dict['conv1.weight']``, see :mod:`distiller.masking`).

        Args:
            kind: the kind of change (``'thinning'``, ``'quantization'``).
            payload: what the replayer needs.
            keep_masks: False when the change ends the masks' use: post-training quantization stores integer
                codes in the weights (a pruned weight holds the code of 0.0, the zero point, which a mask
                multiplication would corrupt), so its masks are cleared.
        """
        record = {"kind": kind, **payload}
        if record not in self._transforms:
            self._transforms.append(record)
        current = {id(param): name for name, param in self.model.named_parameters()}
        existing = set(current.values())
        for old_name, param in self._params_by_mask_name.items():
            if old_name in existing or old_name not in self.zeros_mask_dict:
                continue  # the name still exists (thinning swaps tensors but keeps names)
            masker = self.zeros_mask_dict.pop(old_name)
            new_name = current.get(id(param))
            if new_name is not None:  # else the parameter is gone, e.g. a BatchNorm folded into its conv
                masker.param_name = new_name
                self.zeros_mask_dict[new_name] = masker
        if not keep_masks:
            for masker in self.zeros_mask_dict.values():
                masker.mask = None
        self._params_by_mask_name = dict(self.model.named_parameters())
        self.zeros_mask_dict.aliases = float_copy_aliases(self.model)
        self._fused_cache = None

    # ------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Plain-data state: masks, each policy's own state by policy name (with the saved states no policy
        has claimed yet), model transforms and the schedule's YAML text."""
        policies = {name: {"class": type(policy).__name__, "state": policy.state_dict()}
                    for name, policy in self._named_policies.items()}
        return {
            "masks_dict": {name: masker.mask for name, masker in self.zeros_mask_dict.items()},
            "policies": {**self._pending_policy_states, **policies},
            "model_transforms": self.model_transforms,
            "schedule_yaml": self.schedule_yaml,
        }

    def load_state_dict(self, state: Mapping[str, Any], normalize_dataparallel_keys: bool = False) -> None:
        """Restores masks, transforms and the schedule's text now, and each policy's state by its name:
        policies added already are restored at once, the others when :meth:`add_policy` adds them (e.g.
        when the YAML schedule is loaded again on resume).

        Raises:
            CheckpointError: a mask for a parameter the model does not have; a saved policy state whose
                class differs from the policy of the same name.
        """
        self.init_from_masks_dict(state.get("masks_dict", {}), normalize_dataparallel_keys)
        self._transforms = [dict(record) for record in state.get("model_transforms", [])]
        self.schedule_yaml = state.get("schedule_yaml")
        saved = state.get("policies", {})
        if isinstance(saved, list):  # checkpoints written before policies had names: by scheduling order
            saved = dict(zip(self._named_policies, saved))
        pending = dict(saved)
        for name, policy in self._named_policies.items():
            if name in pending:
                self._restore_policy_state(name, policy, pending.pop(name))
        self._pending_policy_states = pending

    def init_from_masks_dict(self, masks_dict: Mapping[str, Optional[torch.Tensor]],
                             normalize_dataparallel_keys: bool = False) -> None:
        """Sets masks from a name -> tensor (or None) mapping; names are matched ignoring ``module.``
        prefixes (always, so checkpoints move between DataParallel and plain models)."""
        by_normalized = {normalize_module_name(name): name for name, _ in self.model.named_parameters()}
        unknown = [n for n, m in masks_dict.items()
                   if m is not None and normalize_module_name(n) not in by_normalized]
        if unknown:
            raise CheckpointError(f"masks for {len(unknown)} parameter(s) that the model does not have, e.g. "
                                  f"'{unknown[0]}': was the checkpoint saved from another architecture?")
        for name, mask in masks_dict.items():
            target = by_normalized.get(normalize_module_name(name))
            if target is not None:
                self.zeros_mask_dict[target].mask = None if mask is None else mask.to(self.device)

    @staticmethod
    def _restore_policy_state(name: str, policy: ScheduledTrainingPolicy, saved: Mapping[str, Any]) -> None:
        if saved.get("class") != type(policy).__name__:
            raise CheckpointError(f"the checkpoint's state for policy '{name}' belongs to a {saved.get('class')}, "
                                  f"but the schedule's '{name}' is a {type(policy).__name__}: resume with the "
                                  "schedule the checkpoint was trained with, or start a new run")
        policy.load_state_dict(saved.get("state", {}))
