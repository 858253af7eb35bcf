"""Ledgers of the channel-flow interpreter: what the analysis records, and the check of a thinning plan.

:class:`Analysis` records, for one run of the graph on label tensors: the slot of every position of every
thinnable module dimension (*usages*, e.g. ``('layer1.0.conv1', 'out_channels')``), the *contractions*
(conv/linear inputs, where a removed channel must be zero or unused), uniform-count constraints
(grouped convolutions, ``chunk``), BatchNorm constants, blocked slots and every op's output labels.

:class:`Verification` re-runs the graph with the thinned shapes and compares each op's output with the
analysed output minus the removed channels; a difference means that the op (a view with a literal size, a
split with fixed sizes...) would not commute with the removal, and the channels it touches are blamed.
"""
import collections
import logging

import torch

from .channel_flow import Flow
from .slots import SlotUnion, channel_profile, squeeze_constant_dims

msglogger = logging.getLogger(__name__)

__all__ = ["Analysis", "Verification", "Contraction", "NormConstant"]

Contraction = collections.namedtuple("Contraction", ["module_name", "attr", "slots", "input_zero"])
Contraction.__doc__ = ("Channels read by a conv/linear layer: ``slots`` per input position, ``input_zero`` per "
                       "position (True where the input is zero) or None.")
NormConstant = collections.namedtuple("NormConstant", ["module_name", "slots", "constant", "input_zero"])
NormConstant.__doc__ = "What a BatchNorm outputs for an all-zero input channel, per channel."


def _flows(value):
    if isinstance(value, Flow):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, Flow)]
    return []


class Analysis:
    """Records what one run of the channel-flow interpreter learns (see the module docstring)."""

    def __init__(self):
        self.slots = SlotUnion()
        self.usages = {}
        self.modules = {}
        self.contractions = []
        self.uniform = []
        self.norm_constants = []
        self.fixed = {}
        self.recorded = {}
        self.opaque = set()
        self.opaque_values = {}

    def fixed_slots(self, op, count, reason, key=None):
        slots = self.slots.new(count)
        self.slots.block(slots, reason)
        self.fixed[key or op.name] = slots
        return slots

    def usage(self, op, attr, observed, count=None):
        key = (op.module_name, attr)
        if key not in self.usages:
            self.usages[key] = observed.clone() if observed is not None else self.slots.new(count)
            self.modules[op.module_name] = op.module
        elif observed is not None:  # the module is called again: the same weights see both inputs
            self.slots.union_tensors(self.usages[key], observed)
        return self.usages[key]

    def contraction(self, op, attr, slots, input_zero):
        self.contractions.append(Contraction(op.module_name, attr, slots.clone(), input_zero))

    def uniform_blocks(self, slots, block_size):
        self.uniform.append((slots.clone(), block_size))

    def norm_constant(self, op, slots, constant, input_zero):
        self.norm_constants.append(NormConstant(op.module_name, slots.clone(), constant, input_zero))

    def union(self, a, b):
        self.slots.union_tensors(a, b)

    def block(self, labels, reason):
        self.slots.block(labels, reason)

    def canonical(self, labels):
        return self.slots.canonical(labels)

    def canonical_profile(self, labels, dim):
        return channel_profile(self.canonical(labels), dim)

    def failed(self, op, err, fallback):
        msglogger.debug("channel flow: '%s' (%s) cannot run on labels: %s", op.name, op.type, err)
        self.opaque.add(op.name)
        return fallback()

    def opaque_call(self, op, values):
        """Records the arguments of an opaque op other than tensors (sizes, ...)."""
        self.opaque_values[op.name] = values

    def after_node(self, op, value):
        flows = _flows(value)
        if flows:
            self.recorded[op.name] = [(squeeze_constant_dims(f.labels), tuple(f.labels.shape)) for f in flows]
        return value


class Verification:
    """Re-runs the graph with the channels that ``keep_slot`` drops removed, and blames the channels of
    every op whose output is not the analysed output minus those channels.

    Args:
        analysis: the :class:`Analysis` of the same graph.
        keep_slot: bool tensor indexed by slot (last entry: neutral labels), True for kept channels.
    Attributes:
        blamed: root -> reason, for the channels that must stay.
        failed_op: the name of the first op that failed the check, or None.
    """

    def __init__(self, analysis, keep_slot):
        self.analysis = analysis
        self.table = analysis.slots.roots_table()
        self.keep_slot = keep_slot
        self.blamed = {}
        self.failed_op = None

    def fixed_slots(self, op, count, reason, key=None):
        return self.analysis.fixed[key or op.name]

    def usage(self, op, attr, observed, count=None):
        if observed is not None:
            return observed
        slots = self.analysis.usages[(op.module_name, attr)]
        return slots[self.keep_slot[slots]]

    def contraction(self, *args):
        pass

    uniform_blocks = norm_constant = union = block = contraction

    def canonical(self, labels):
        return self.table[labels]

    def opaque_call(self, op, values):
        """An opaque op computes its output from its arguments; a size among them that changes with the
        thinning (``x.repeat(1, y.shape[1])``) would change its output."""
        try:
            same = bool(values == self.analysis.opaque_values.get(op.name))
        except Exception:  # values that do not compare (tensors): assume they changed
            same = False
        if not same:
            self._substitute(op, f"'{op.name}' ({op.type}) gets other arguments after thinning")

    def canonical_profile(self, labels, dim):
        return channel_profile(self.canonical(labels), dim)

    def failed(self, op, err, fallback):
        if op.name in self.analysis.opaque:  # it failed on the labels already: its channels are blocked
            return fallback()
        return self._substitute(op, f"'{op.name}' ({op.type}) fails on the thinned shapes ({err})")

    def after_node(self, op, value):
        records = self.analysis.recorded.get(op.name)
        if not records:
            return value
        flows = _flows(value)
        expected = [self._thinned(*record) for record in records]
        if len(flows) == len(expected) and all(
                e is not None and tuple(f.labels.shape) == e[1]
                and torch.equal(squeeze_constant_dims(self.table[squeeze_constant_dims(f.labels)]), e[0])
                for f, e in zip(flows, expected)):
            return value
        return self._substitute(op, f"'{op.name}' ({op.type}) would see them in another layout after thinning")

    def _thinned(self, compressed, shape):
        """The analysed labels of one output minus the removed channels: (narrowed roots, full shape), or
        None when the removal does not follow one dimension."""
        roots = squeeze_constant_dims(self.table[compressed])
        varying = [d for d in range(roots.dim()) if roots.shape[d] > 1]
        if not varying or bool(self.keep_slot[roots].all()):
            return (roots, shape) if bool(self.keep_slot[roots].all()) else None
        if len(varying) > 1:
            return None
        dim = varying[0]
        kept = self.keep_slot[roots.reshape(-1)].nonzero().reshape(-1)
        shape = shape[:dim] + (kept.numel(),) + shape[dim + 1:]
        return squeeze_constant_dims(roots.index_select(dim, kept).expand(shape)), shape

    def _substitute(self, op, reason):
        """Blames the channels around ``op`` and returns its expected thinned output, to go on checking."""
        self.failed_op = self.failed_op or op.name
        for name in [op.name] + list(op.inputs):
            for compressed, _ in self.analysis.recorded.get(name, ()):
                for root in torch.unique(self.table[compressed]).tolist():
                    if root >= 0:
                        self.blamed.setdefault(root, reason)
        flows = []
        for compressed, shape in self.analysis.recorded.get(op.name, ()):
            expected = self._thinned(compressed, shape)
            roots, shape = expected if expected is not None else (self.table[compressed], shape)
            flows.append(Flow(roots.expand(shape), None))
        return flows[0] if len(flows) == 1 else tuple(flows) if flows else None
