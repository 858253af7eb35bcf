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

import torch

from .errors import ArgumentError
from .policy import LossComponent, PolicyLoss
from .utils import model_device, normalize_module_name

msglogger = logging.getLogger(__name__)

__all__ = ["ParameterMasker", "CompressionScheduler", "create_model_masks_dict"]


class ParameterMasker:
    """Holds the pruning mask of one parameter and applies it.

    Attributes:
        mask: a 0/1 tensor with the parameter's shape, or None (nothing masked).
        mask_on_forward_only: mask only for the forward pass ("soft" pruning): the optimizer step may
            move masked weights, which are zeroed again before the next forward pass.
        use_double_copies: compute the loss with masked weights but update the unmasked copy
            (the copy is restored just before the optimizer step).
        is_regularization_mask: the mask is applied once and then discarded.
    """
    _generation = 0  # bumped whenever any mask changes, so the scheduler can cache its fused lists

    def __init__(self, param_name):
        self.param_name = param_name
        self._mask = None
        self.is_regularization_mask = False
        self.use_double_copies = False
        self.mask_on_forward_only = False
        self.unmasked_copy = None
        self.backward_hook_handle = None

    @property
    def mask(self):
        return self._mask

    @mask.setter
    def mask(self, value):
        self._mask = value
        ParameterMasker._generation += 1

    @property
    def is_soft(self):
        """True when the mask is applied for the forward pass only (not after the optimizer step)."""
        return self.use_double_copies or self.mask_on_forward_only

    def apply_mask(self, parameter):
        """Masks ``parameter`` in place (keeping an unmasked copy when ``use_double_copies``)."""
        if self.mask is None:
            return None
        if self.use_double_copies:
            self.unmasked_copy = parameter.detach().clone()
        self.mask_tensor(parameter)
        if self.is_regularization_mask:
            self.mask = None
        return parameter

    def mask_tensor(self, tensor):
        if self.mask is not None:
            with torch.no_grad():
                tensor.mul_(self.mask)

    def mask_gradient(self, gradient):
        """Gradient hook: zeroes the gradient of masked elements (None keeps the gradient unchanged)."""
        if self.mask is not None:
            return gradient.mul(self.mask)
        return None

    def revert_weights(self, parameter):
        """Restores the unmasked copy saved by :meth:`apply_mask` (double-copies mode)."""
        if not self.use_double_copies or self.unmasked_copy is None:
            return
        with torch.no_grad():
            parameter.copy_(self.unmasked_copy)
        self.unmasked_copy = None


class _MaskDict(dict):
    """name -> ParameterMasker; creates maskers on first access (parameters added by quantization or
    other transforms get one lazily)."""

    def __missing__(self, name):
        masker = self[name] = ParameterMasker(name)
        return masker


def create_model_masks_dict(model):
    """Returns a dict with one (empty) :class:`ParameterMasker` per parameter of ``model``."""
    masks = _MaskDict()
    for name, _ in model.named_parameters():
        masks[name] = ParameterMasker(name)
    return masks


class CompressionScheduler:
    """Schedules compression policies by epoch and forwards the training-loop callbacks to them.

    Args:
        model: the model being compressed.
        zeros_mask_dict: name -> ParameterMasker (created when not given).
        device: where masks live; taken from the model when not given.
    """

    def __init__(self, model, zeros_mask_dict=None, device=None):
        self.model = model
        self.device = torch.device(device) if device is not None else model_device(model)
        self.policies = {}
        self.sched_metadata = {}
        if zeros_mask_dict is None:
            zeros_mask_dict = create_model_masks_dict(model)
        elif not isinstance(zeros_mask_dict, _MaskDict):
            zeros_mask_dict = _MaskDict(zeros_mask_dict)
        self.zeros_mask_dict = zeros_mask_dict
        #: Ordered plain-data records of structural changes (thinning, quantization), replayed by
        #: ``load_checkpoint`` on a freshly built model before its weights are loaded. Add records with
        #: :meth:`record_model_transform`, which also moves masks to the parameters' new names.
        self.model_transforms = []
        #: The YAML text of the schedule(s) the policies were built from (set by ``file_config`` /
        #: ``dict_config``; several schedules are separate YAML documents), saved in checkpoints so a
        #: resumed run can rebuild the same policies. None when the policies did not come from a schedule.
        self.schedule_yaml = None
        self._params_by_mask_name = dict(model.named_parameters())
        self._ordered_policies = []
        self._pending_policy_states = []
        self._fused_cache = None

    # ----------------------------------------------------------------------------------- policies
    def add_policy(self, policy, epochs=None, starting_epoch=0, ending_epoch=1, frequency=1):
        """Schedules ``policy`` on ``epochs`` (a list) or on ``range(starting_epoch, ending_epoch, frequency)``.

        Raises:
            ValueError: for an empty or inverted epoch range, or (through the policy) for parameter
                names that match nothing in the model.
        """
        if epochs is None:
            if ending_epoch <= starting_epoch:
                raise ArgumentError(f"ending_epoch ({ending_epoch}) must be greater than starting_epoch "
                                    f"({starting_epoch})")
            if frequency is None or frequency < 1:
                raise ArgumentError(f"frequency must be a positive integer, got {frequency}")
            epochs = list(range(starting_epoch, ending_epoch, frequency))
        else:
            epochs = sorted(set(int(e) for e in epochs))
            if not epochs:
                raise ArgumentError("epochs must list at least one epoch")
            starting_epoch, ending_epoch, frequency = epochs[0], epochs[-1] + 1, None
        policy.attach(self)
        for epoch in epochs:
            self.policies.setdefault(epoch, []).append(policy)
        self.sched_metadata[policy] = {"starting_epoch": starting_epoch, "ending_epoch": ending_epoch,
                                       "frequency": frequency}
        self._ordered_policies.append(policy)
        if self._pending_policy_states:
            self._restore_policy_state(policy, self._pending_policy_states.pop(0))

    def _meta(self, policy, epoch, optimizer):
        return dict(self.sched_metadata[policy], current_epoch=epoch, model=self.model,
                    optimizer=optimizer, scheduler=self)

    def _active(self, epoch):
        return self.policies.get(epoch, ())

    # ---------------------------------------------------------------------------------- callbacks
    def on_epoch_begin(self, epoch, optimizer=None, **kwargs):
        self._fused_cache = None
        for policy in self._active(epoch):
            policy.on_epoch_begin(self.model, self.zeros_mask_dict, self._meta(policy, epoch, optimizer),
                                  optimizer=optimizer, **kwargs)

    def on_minibatch_begin(self, epoch, minibatch_id, minibatches_per_epoch, optimizer=None):
        for policy in self._active(epoch):
            policy.on_minibatch_begin(self.model, epoch, minibatch_id, minibatches_per_epoch,
                                      self.zeros_mask_dict, self._meta(policy, epoch, optimizer), optimizer)
        self._apply_soft_masks()

    def before_backward_pass(self, epoch, minibatch_id, minibatches_per_epoch, loss, optimizer=None,
                             return_loss_components=False):
        """Lets policies add loss terms (regularization, distillation); returns the overall loss
        (or a :class:`PolicyLoss` with the components when ``return_loss_components``)."""
        overall_loss, components = loss, []
        for policy in self._active(epoch):
            policy_loss = policy.before_backward_pass(self.model, epoch, minibatch_id, minibatches_per_epoch,
                                                      overall_loss, self.zeros_mask_dict, optimizer)
            if policy_loss is not None:
                overall_loss = policy_loss.overall_loss
                components.extend(policy_loss.loss_components)
        return PolicyLoss(overall_loss, components) if return_loss_components else overall_loss

    def before_parameter_optimization(self, epoch, minibatch_id, minibatches_per_epoch, optimizer):
        for name, param in self.model.named_parameters():
            masker = self.zeros_mask_dict.get(name)
            if masker is not None and masker.use_double_copies:
                masker.revert_weights(param)
        for policy in self._active(epoch):
            policy.before_parameter_optimization(self.model, epoch, minibatch_id, minibatches_per_epoch,
                                                 self.zeros_mask_dict, self._meta(policy, epoch, optimizer),
                                                 optimizer)

    def on_minibatch_end(self, epoch, minibatch_id, minibatches_per_epoch, optimizer=None):
        # The optimizer step may have moved masked weights (momentum, weight decay): mask them again.
        self.mask_all_weights(is_forward=False)
        for policy in self._active(epoch):
            policy.on_minibatch_end(self.model, epoch, minibatch_id, minibatches_per_epoch,
                                    self.zeros_mask_dict, optimizer)

    def on_epoch_end(self, epoch, optimizer=None, **kwargs):
        for policy in self._active(epoch):
            policy.on_epoch_end(self.model, self.zeros_mask_dict, self._meta(policy, epoch, optimizer),
                                optimizer=optimizer, **kwargs)

    # ------------------------------------------------------------------------------------ masking
    def _masked_params(self, include_soft):
        params, masks = [], []
        for name, param in self.model.named_parameters():
            masker = self.zeros_mask_dict.get(name)
            if masker is None or masker.mask is None or (masker.is_soft and not include_soft):
                continue
            params.append(param)
            masks.append(masker.mask)
        return params, masks

    def mask_all_weights(self, is_forward=True):
        """Multiplies every masked parameter by its mask (soft masks only when ``is_forward``).

        All multiplications run as one fused ``torch._foreach_mul_``; the parameter/mask lists are
        cached until a mask changes or an epoch begins.
        """
        if is_forward:
            params, masks = self._masked_params(include_soft=True)
        else:
            key = ParameterMasker._generation
            if self._fused_cache is None or self._fused_cache[0] != key:
                self._fused_cache = (key, *self._masked_params(include_soft=False))
            _, params, masks = self._fused_cache
        if params:
            with torch.no_grad():
                torch._foreach_mul_(params, masks)

    @contextlib.contextmanager
    def soft_masks_applied(self):
        """Within the block, weights are what training forward passes see: forward-only masks
        (``mask_on_forward_only``, ``use_double_copies``) are multiplied in and the unmasked weights are
        restored on exit. Use it around evaluation and sparsity statistics of a soft-pruned model::

            with scheduler.soft_masks_applied():
                top1 = evaluate(model, test_loader)
        """
        soft = [(param, masker.mask) for param, masker in self._soft_maskers()]
        saved = [param.detach().clone() for param, _ in soft]
        with torch.no_grad():
            for param, mask in soft:
                param.mul_(mask)
        try:
            yield
        finally:
            with torch.no_grad():
                for (param, _), unmasked in zip(soft, saved):
                    param.copy_(unmasked)

    def _soft_maskers(self):
        """(parameter, masker) for every parameter with a forward-only mask."""
        for name, param in self.model.named_parameters():
            masker = self.zeros_mask_dict.get(name)
            if masker is not None and masker.mask is not None and masker.is_soft:
                yield param, masker

    def _apply_soft_masks(self):
        for param, masker in self._soft_maskers():
            masker.apply_mask(param)

    # --------------------------------------------------------------------------- structural changes
    def record_model_transform(self, record, keep_masks=True):
        """Logs a structural change just made to the model, and keeps the masks on their parameters.

        ``record`` (plain data, ``{'kind': ..., ...}``) is appended to :attr:`model_transforms` unless an
        identical record is there already (a schedule re-applied on resume). Masks follow their parameter
        object to its new name: a quantizer wrapping ``conv1`` turns ``conv1.weight`` into
        ``conv1.wrapped_module.weight``, quantization-aware training into ``conv1.float_weight``. So the
        masks keep applying, and checkpoints name them as the transformed model does, which is the model
        ``load_checkpoint`` rebuilds by replaying the records in order.

        Args:
            record: the plain-data record that the registered replayer of ``record['kind']`` re-applies.
            keep_masks: False when the change ends the masks' use: post-training quantization stores integer
                codes in the weights (a pruned weight holds the code of 0.0, the zero point, which a mask
                multiplication would corrupt), so its masks are cleared.
        """
        if record not in self.model_transforms:
            self.model_transforms.append(record)
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
        self._fused_cache = None

    # ------------------------------------------------------------------------------------- state
    def state_dict(self):
        """Plain-data state: masks, each policy's own state (in scheduling order, followed by the saved
        states no policy has claimed yet), model transforms and the schedule's YAML text."""
        return {
            "masks_dict": {name: masker.mask for name, masker in self.zeros_mask_dict.items()},
            "policies": [{"class": type(p).__name__, "state": p.state_dict()} for p in self._ordered_policies]
            + list(self._pending_policy_states),
            "model_transforms": list(self.model_transforms),
            "schedule_yaml": self.schedule_yaml,
        }

    def load_state_dict(self, state, normalize_dataparallel_keys=False):
        """Restores masks and transforms now, and policy states as the same policies are added again
        (in the same order) by :meth:`add_policy`, e.g. by re-loading the YAML schedule on resume.

        Raises:
            ValueError: when the state holds a mask for a parameter the model does not have.
        """
        self.init_from_masks_dict(state.get("masks_dict", {}), normalize_dataparallel_keys)
        self.model_transforms = list(state.get("model_transforms", []))
        self.schedule_yaml = state.get("schedule_yaml")
        saved = list(state.get("policies", []))
        for policy in self._ordered_policies:
            if saved:
                self._restore_policy_state(policy, saved.pop(0))
        self._pending_policy_states = saved

    def init_from_masks_dict(self, masks_dict, normalize_dataparallel_keys=False):
        """Sets masks from a name -> tensor (or None) mapping; names are matched ignoring ``module.``
        prefixes (always, so checkpoints move between DataParallel and plain models)."""
        by_normalized = {normalize_module_name(name): name for name, _ in self.model.named_parameters()}
        unknown = [n for n, m in masks_dict.items()
                   if m is not None and normalize_module_name(n) not in by_normalized]
        if unknown:
            raise ValueError(f"masks for {len(unknown)} parameter(s) that the model does not have, e.g. "
                             f"'{unknown[0]}': was the checkpoint saved from another architecture?")
        for name, mask in masks_dict.items():
            target = by_normalized.get(normalize_module_name(name))
            if target is not None:
                self.zeros_mask_dict[target].mask = None if mask is None else mask.to(self.device)

    @staticmethod
    def _restore_policy_state(policy, saved):
        if saved.get("class") != type(policy).__name__:
            msglogger.warning("Not restoring policy state: the checkpoint has %s where the schedule has %s",
                              saved.get("class"), type(policy).__name__)
            return
        policy.load_state_dict(saved.get("state", {}))


# Re-exported for callers that import the loss containers from the scheduler module, as in Distiller.
__all__ += ["PolicyLoss", "LossComponent"]
