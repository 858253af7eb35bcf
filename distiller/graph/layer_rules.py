"""Layer rules: how a module type moves channels, and how thinning shrinks it. Open for extension.

A :class:`LayerRule` answers two questions about one module type:

* :meth:`LayerRule.flow` (analysis): which channels a call of the module reads, creates or passes
  through. It talks to the analysis through a :class:`~distiller.graph.channel_flow.LayerCall`.
* :meth:`LayerRule.edits` (surgery): which tensors shrink, and how, when a dimension attribute of the
  module keeps only some positions; :meth:`LayerRule.channel_weights` gives the weights that belong to
  each position (ranking, zero tests and the masks of structured pruners all use it).

Rules are registered per module class with :func:`register_layer_rule`; a subclass inherits the rule of
its nearest registered base class, and modules with a rule are kept whole (as leaves) when the graph is
traced. Built in: convolutions, transposed convolutions, Linear, BatchNorm/InstanceNorm, GroupNorm
(whole groups) and PReLU. A module type without a rule is traced into, or, for a leaf, is *opaque*: the
channels it touches stay whole, with the reason logged.

Example: a channels-first LayerNorm (normalizing over dim 1 with one weight and bias per channel). Its
statistics mix the channels, so removing channels changes the others' outputs a little: fine for
:func:`~distiller.thinning.prune_and_thin`, not exact::

    @register_layer_rule(LayerNorm2d)
    class LayerNorm2dRule(LayerRule):
        dims = {"num_channels": "param"}

        def flow(self, call):
            x = call.inputs[0]
            call.uses("num_channels", call.channels(x, dim=1))
            return x

        def edits(self, module, attr, keep):
            return [("weight", select(0, keep)), ("bias", select(0, keep))], {"num_channels": keep.numel()}
"""
from __future__ import annotations

import abc
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from .channel_flow import Flow, LayerCall

TensorEdit = tuple[str, Callable[[torch.Tensor], torch.Tensor]]
Edits = tuple[list[TensorEdit], dict]
#: A module of the type a rule is registered for (typed loosely: its attributes are the type's own).
Layer = Any

msglogger = logging.getLogger(__name__)

__all__ = ["LayerRule", "register_layer_rule", "layer_rule_for", "registered_layer_types", "select",
           "zero_input_output", "ROLES"]

#: Roles of a module dimension: ``'out'``: channels the layer creates (its filters); ``'in'``: channels
#: it reads and sums over (its input channels); ``'param'``: per-channel parameters of channels passing
#: through (a norm's scale and shift).
ROLES = ("out", "in", "param")

_RULES: dict[type, LayerRule] = {}


class LayerRule(abc.ABC):
    """How one module type moves channels and shrinks. Subclass it and register it for a module class.

    Attributes:
        dims: dimension attribute -> role (see :data:`ROLES`), e.g. ``{'in_channels': 'in',
            'out_channels': 'out'}``. Thinning shrinks these attributes.
    """

    dims: dict[str, str] = {}

    @abc.abstractmethod
    def flow(self, call: LayerCall) -> Flow:
        """Tells the analysis how the call moves channels; returns the output (a flow from ``call``).

        Args:
            call: the :class:`~distiller.graph.channel_flow.LayerCall` of one call of the module.
        """

    def edits(self, module: Layer, attr: str, keep: torch.Tensor) -> Edits:
        """How ``module`` shrinks when dimension ``attr`` keeps the positions ``keep``.

        Args:
            module: the module.
            attr: one of :attr:`dims`.
            keep: increasing LongTensor of the kept positions.
        Returns:
            ``(edits, attributes)``: ``edits`` lists ``(tensor attribute name, fn(old tensor) -> new
            tensor)`` for the parameters and buffers to slice; ``attributes`` maps module attributes to
            their new values.
        """
        raise NotImplementedError

    def channel_weights(self, module: Layer, attr: str, weight: torch.Tensor) -> Optional[torch.Tensor]:
        """``weight`` (the module's weight, its mask or its gradient) as ``[positions of attr, elements]``:
        the weights that belong to each position. None when the dimension owns no weights of its own."""
        return None

    def check(self, module: Layer, attr: str, keep: torch.Tensor) -> Optional[str]:
        """Why keeping ``keep`` along ``attr`` does not fit ``module`` (a sentence), or None when it fits."""
        return None


def register_layer_rule(*module_types: type) -> Callable[[type], type]:
    """Class decorator registering a :class:`LayerRule` subclass (instantiated once) for ``module_types``.

    A later registration for the same type replaces the earlier one (so a user may override a built-in
    rule). Register before building the graph.

    Raises:
        TypeError: when a target is not an ``nn.Module`` subclass.
    """
    for module_type in module_types:
        if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
            raise TypeError(f"register_layer_rule takes nn.Module subclasses, got {module_type!r}")

    def add(rule_class: type) -> type:
        rule = rule_class()
        for module_type in module_types:
            if module_type in _RULES:
                msglogger.info("Layer rule for %s replaced by %s", module_type.__name__, rule_class.__name__)
            _RULES[module_type] = rule
        return rule_class
    return add


def layer_rule_for(module: Layer) -> Optional[LayerRule]:
    """The rule of ``module``'s class or of its nearest registered base class, or None."""
    for klass in type(module).__mro__:
        rule = _RULES.get(klass)
        if rule is not None:
            return rule
    return None


def registered_layer_types() -> tuple[type, ...]:
    """The module classes that have a rule (kept whole when tracing)."""
    return tuple(_RULES)


def select(dim: int, keep: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn(tensor) -> tensor.index_select(dim, keep)`` (on the tensor's device)."""
    return lambda t: t.index_select(dim, keep.to(t.device))


def zero_input_output(module: Layer) -> Optional[torch.Tensor]:
    """What a norm layer outputs (eval mode) for an all-zero input channel, per channel; None when that is
    zero (no affine shift)."""
    if not getattr(module, "affine", False) or module.bias is None:
        return None
    with torch.no_grad():
        if getattr(module, "running_mean", None) is None:
            return module.bias.detach().cpu()
        scale = module.weight / torch.sqrt(module.running_var + module.eps)
        return (module.bias - module.running_mean * scale).detach().cpu()


def _grouped_columns(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``weight`` ``[groups * a, b, ...]`` as ``[groups * b, a * ...]``: row ``g * b + j`` holds column ``j``
    of group ``g``'s rows (the input channels of a grouped conv; the outputs of a grouped transposed one)."""
    rows, columns = weight.shape[:2]
    grid = weight.reshape(groups, rows // groups, columns, -1).transpose(1, 2)
    return grid.reshape(groups * columns, -1)


def _grouped_column_select(per_group: int, groups: int,
                           keep: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Gathers along dim 1 the kept columns ``keep`` (global positions, ``per_group`` per group) of a weight
    whose rows split into ``groups`` groups (each group keeps as many columns)."""
    local = (keep % per_group).reshape(groups, -1)

    def gather(weight: torch.Tensor) -> torch.Tensor:
        index = local.to(weight.device).repeat_interleave(weight.shape[0] // groups, dim=0)
        index = index.reshape(index.shape + (1,) * (weight.dim() - 2)).expand(-1, -1, *weight.shape[2:])
        return weight.gather(1, index)
    return gather


def _uneven_groups(module: Layer, attr: str, keep: torch.Tensor, groups: int) -> Optional[str]:
    size = getattr(module, attr)
    counts = torch.bincount(keep // (size // groups), minlength=groups)
    if bool((counts == counts[0]).all()):
        return None
    return f"it has {groups} groups and must keep the same number of '{attr}' in each, got {counts.tolist()}"


def _is_depthwise(module: Layer) -> bool:
    return module.groups > 1 and module.groups == module.in_channels


def _depthwise_output(call: LayerCall, x: Flow, in_slots: torch.Tensor, repeat: int) -> Flow:
    """Output of a depthwise layer: output channel ``o`` is input channel ``o // repeat``."""
    call.uses("in_channels", in_slots)
    slots = call.uses("out_channels", in_slots.repeat_interleave(repeat))
    zeros = None
    if call.tracking_zeros:
        in_zero = cast(torch.Tensor, call.input_zero(x, 1))      # a tensor while tracking zeros
        zeros = call.zero_filters("out_channels") | in_zero.repeat_interleave(repeat)
        bias = call.module.bias
        if call.exact and bias is not None:
            zeros &= (bias.detach() == 0).cpu()
    return call.output(slots, 1, zeros)


@register_layer_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d)
class ConvRule(LayerRule):
    """Convolutions: read (and sum over) the input channels, create ``out_channels``; a depthwise one
    passes each input channel to its own output channels; a grouped one keeps equal counts per group."""

    dims = {"in_channels": "in", "out_channels": "out"}

    def flow(self, call: LayerCall) -> Flow:
        module, x = call.module, call.inputs[0]
        in_slots = call.channels(x, 1)
        if _is_depthwise(module):
            return _depthwise_output(call, x, in_slots, module.out_channels // module.groups)
        call.reads("in_channels", in_slots, x, 1)
        out_slots = call.creates("out_channels", module.out_channels)
        if module.groups > 1:
            call.same_count(in_slots, module.in_channels // module.groups)
            call.same_count(out_slots, module.out_channels // module.groups)
        return call.output(out_slots, 1)

    def channel_weights(self, module: Layer, attr: str, weight: torch.Tensor) -> Optional[torch.Tensor]:
        if attr == "out_channels":
            return weight.reshape(weight.shape[0], -1)
        return None if _is_depthwise(module) else _grouped_columns(weight, module.groups)

    def edits(self, module: Layer, attr: str, keep: torch.Tensor) -> Edits:
        if attr == "out_channels":
            return [(n, select(0, keep)) for n in ("weight", "bias") if getattr(module, n) is not None], \
                {attr: keep.numel()}
        if _is_depthwise(module):  # the output channels carry the selection
            return [], {"in_channels": keep.numel(), "groups": keep.numel()}
        if module.groups == 1:
            return [("weight", select(1, keep))], {attr: keep.numel()}
        gather = _grouped_column_select(module.in_channels // module.groups, module.groups, keep)
        return [("weight", gather)], {attr: keep.numel()}

    def check(self, module: Layer, attr: str, keep: torch.Tensor) -> Optional[str]:
        if module.groups > 1 and not _is_depthwise(module):
            return _uneven_groups(module, attr, keep, module.groups)
        return None


@register_layer_rule(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
class ConvTransposeRule(ConvRule):
    """Transposed convolutions (weight ``[in, out / groups, ...]``): the channel flow of :class:`ConvRule`,
    with the weight's first two dimensions swapped."""

    def channel_weights(self, module: Layer, attr: str, weight: torch.Tensor) -> Optional[torch.Tensor]:
        if attr == "in_channels":
            return None if _is_depthwise(module) else weight.reshape(weight.shape[0], -1)
        if _is_depthwise(module):
            return weight.reshape(module.out_channels, -1)
        return _grouped_columns(weight, module.groups)

    def edits(self, module: Layer, attr: str, keep: torch.Tensor) -> Edits:
        count = keep.numel()
        if attr == "in_channels":
            attributes = {"in_channels": count, "groups": count} if _is_depthwise(module) else {attr: count}
            return [("weight", select(0, keep))], attributes
        edits = [("bias", select(0, keep))] if module.bias is not None else []
        if module.groups == 1:
            edits.append(("weight", select(1, keep)))
        elif not _is_depthwise(module):  # depthwise: the input channels carry the selection
            edits.append(("weight", _grouped_column_select(module.out_channels // module.groups, module.groups, keep)))
        return edits, {attr: count}


@register_layer_rule(nn.Linear)
class LinearRule(LayerRule):
    """Linear layers: read the features of the last dimension, create ``out_features``."""

    dims = {"in_features": "in", "out_features": "out"}

    def flow(self, call: LayerCall) -> Flow:
        x = call.inputs[0]
        call.reads("in_features", call.channels(x, -1), x, -1)
        return call.output(call.creates("out_features", call.module.out_features), -1)

    def channel_weights(self, module: Layer, attr: str, weight: torch.Tensor) -> Optional[torch.Tensor]:
        return weight if attr == "out_features" else weight.t()

    def edits(self, module: Layer, attr: str, keep: torch.Tensor) -> Edits:
        if attr == "out_features":
            return [(n, select(0, keep)) for n in ("weight", "bias") if getattr(module, n) is not None], \
                {attr: keep.numel()}
        return [("weight", select(1, keep))], {attr: keep.numel()}


def _per_channel_edits(module: Layer, attr: str, keep: torch.Tensor,
                       names: tuple[str, ...] = ("weight", "bias", "running_mean", "running_var")) -> Edits:
    return [(n, select(0, keep)) for n in names if getattr(module, n, None) is not None], {attr: keep.numel()}


def _shifted(call: LayerCall, x: Flow, slots: torch.Tensor) -> Flow:
    """A norm's output for input ``x``: a zero channel stays zero unless its shift makes it a constant
    (which, by Distiller's convention, counts as zero unless ``call.exact``: the shift goes with it)."""
    if not call.tracking_zeros:
        return x
    constant = zero_input_output(call.module)
    if constant is None:
        return x
    call.shifts(slots, constant, x, 1)
    return call.with_zeros(x, constant == 0, 1) if call.exact else x


@register_layer_rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
                     nn.InstanceNorm2d, nn.InstanceNorm3d)
class BatchNormRule(LayerRule):
    """BatchNorm / InstanceNorm: per-channel statistics and affine parameters (dim 1)."""

    dims = {"num_features": "param"}

    def flow(self, call: LayerCall) -> Flow:
        x = call.inputs[0]
        slots = call.channels(x, 1)
        call.uses("num_features", slots)
        return _shifted(call, x, slots)

    def edits(self, module: Layer, attr: str, keep: torch.Tensor) -> Edits:
        return _per_channel_edits(module, attr, keep)


@register_layer_rule(nn.GroupNorm)
class GroupNormRule(LayerRule):
    """GroupNorm: statistics per group of channels, so a group goes whole (``num_groups`` shrinks with it)."""

    dims = {"num_channels": "param"}

    def flow(self, call: LayerCall) -> Flow:
        module, x = call.module, call.inputs[0]
        slots = call.channels(x, 1)
        groups = slots.reshape(-1, module.num_channels // module.num_groups)
        call.unite(groups[:, :1].expand_as(groups), groups)
        call.uses("num_channels", slots)
        return _shifted(call, x, slots)

    def edits(self, module: Layer, attr: str, keep: torch.Tensor) -> Edits:
        edits, attributes = _per_channel_edits(module, attr, keep, ("weight", "bias"))
        attributes["num_groups"] = keep.numel() // (module.num_channels // module.num_groups)
        return edits, attributes

    def check(self, module: Layer, attr: str, keep: torch.Tensor) -> Optional[str]:
        size = module.num_channels // module.num_groups
        rows = keep.reshape(-1, size) if keep.numel() % size == 0 else None
        if rows is not None and bool((rows - rows[:, :1] == torch.arange(size)).all()) and \
                bool((rows[:, 0] % size == 0).all()):
            return None
        return f"a GroupNorm keeps whole groups of {size} channels"


@register_layer_rule(nn.PReLU)
class PReLURule(LayerRule):
    """PReLU: one slope per channel (dim 1) when ``num_parameters > 1``; a shared slope is elementwise."""

    dims = {"num_parameters": "param"}

    def flow(self, call: LayerCall) -> Flow:
        x = call.inputs[0]
        if call.module.num_parameters > 1:
            call.uses("num_parameters", call.channels(x, 1))
        return x

    def edits(self, module: Layer, attr: str, keep: torch.Tensor) -> Edits:
        return _per_channel_edits(module, attr, keep, ("weight",))
