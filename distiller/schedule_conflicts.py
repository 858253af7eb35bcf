"""Which compressors one schedule may combine (fusion compression), and the combinations it refuses.

A schedule may run several pruners on different weights, regularizers, one quantization-aware-training
quantizer and other policies on one model at once. Their interplay is defined as follows:

* policies run in the order of the schedule's ``policies`` list at every callback of an epoch;
* under quantization-aware training a pruner or regularizer naming ``conv1.weight`` acts on its full-precision
  copy ``conv1.float_weight`` (see :mod:`distiller.masking`); the mask is applied to that copy after every
  optimizer step, and the quantized weight computed from it is exactly zero wherever the mask is, because linear
  quantization maps 0.0 to the integer zero point and back to 0.0;
* regularization and distillation terms are added to the loss in policy order and reported as loss components.

Refused when the schedule loads (:func:`find_conflict`), each error naming both instances:

* pruning or thresholding weights that the quantizer cannot keep at zero (DoReFa and PACT weights have no zero
  level): the pruned weights would come back as non-zero quantized values;
* thinning (``StructureRemover``, ``FilterRemover``, ``ChannelRemover``) or ``group_dependency: Graph`` with a
  quantizer whose weight levels do not include 0 (DoReFa, PACT: the zero channels they remove would still
  contribute after quantization) or with ``fold_bn`` (a ``SimulatedFoldedBatchNorm`` holds a layer and its
  BatchNorm, which the channel graph does not follow). With the other quantizers the graph follows the channels
  through the quantization modules and thinning slices the float copies and quantization parameters with the
  weights (:mod:`distiller.thinning.followers`); the recipe is recorded after the quantization transform, so
  ``load_checkpoint`` replays both in that order;
* weights that the quantizer's preparation renames or removes (``fold_bn`` moves each folded layer into a
  ``SimulatedFoldedBatchNorm``): :func:`moved_targets_message` is raised once the quantizer has prepared the model.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch

from .errors import summarize_names
from .masking import named_scheduled_parameters
from .utils import match_names

__all__ = ["ScheduledInstance", "find_conflict", "moved_targets_message"]


@dataclass(frozen=True)
class ScheduledInstance:
    """An instance that a schedule's policy runs: the policy's index in ``policies``, the instance's section
    (``'pruners'``, ...) and name, and the instance itself."""
    index: int
    section: str
    name: str
    instance: Any

    @property
    def title(self) -> str:
        """``pruner 'agp' (AutomatedGradualPruner)``, for messages."""
        return f"{self.section[:-1]} '{self.name}' ({type(self.instance).__name__})"


def find_conflict(model: torch.nn.Module, scheduled: Sequence[ScheduledInstance]) -> Optional[tuple[int, str]]:
    """The first combination the module docstring refuses, as ``(policy index, message)``, or None.

    Args:
        model: the model, before the quantizer prepares it.
        scheduled: the instances the schedule's policies run, in policy order.
    """
    quantizer = next((s for s in scheduled if s.section == "quantizers"), None)
    if quantizer is None:
        return None
    graph_problem = _channel_graph_problem(quantizer.instance)
    for item in scheduled:
        graph_user = getattr(item.instance, "uses_channel_graph", False)
        if graph_user and graph_problem and item.section == "extensions":
            return item.index, (
                f"{item.title} thins the model, but {quantizer.title} {graph_problem}: thin in a schedule without "
                "the quantizer, then train with the quantizer from the thinned checkpoint (--exp-load-weights-from)")
        if graph_user and graph_problem:
            return item.index, (
                f"{item.title} uses group_dependency: Graph, but {quantizer.title} {graph_problem}: drop "
                "group_dependency (or use Leader), or prune with Graph in a schedule before quantization-aware "
                "training")
        masked = _masked_quantized_weights(model, item, quantizer.instance)
        if masked:
            return item.index, (
                f"{item.title} zeroes weights that {quantizer.title} quantizes ({summarize_names(masked, 3)}), but "
                f"{type(quantizer.instance).__name__}'s weight levels do not include 0, so the pruned weights would "
                "be non-zero after quantization: use QuantAwareTrainRangeLinearQuantizer or WRPNQuantizer, or keep "
                "these layers' weights in float (overrides: {<layer>: {bits_weights: null}})")
    return None


def _channel_graph_problem(quantizer: Any) -> Optional[str]:
    """Why channels that the channel graph finds zero cannot be removed from ``quantizer``'s model, or None."""
    if not quantizer.keeps_zero_weights:
        return (f"quantizes weights to levels that do not include 0 ({type(quantizer).__name__}), so zero channels "
                "would still contribute after quantization")
    if getattr(quantizer, "fold_bn", False):
        return ("folds BatchNorms (fold_bn) into SimulatedFoldedBatchNorm modules, whose channels the graph does not "
                "follow")
    return None


def _masked_quantized_weights(model: torch.nn.Module, item: ScheduledInstance, quantizer: Any) -> list[str]:
    """The weights that ``item`` masks to zero and ``quantizer`` quantizes without keeping zeros at zero."""
    masks = item.section == "pruners" or (item.section == "regularizers"
                                          and getattr(item.instance, "threshold_criteria", None) is not None)
    if not masks or quantizer.keeps_zero_weights:
        return []
    names = [name for name, _ in named_scheduled_parameters(model)]
    targeted = {n for hits in match_names(item.instance.targets(), names).values() for n in hits}
    return [name for name in quantizer.quantized_weight_names() if name in targeted]


def moved_targets_message(item: ScheduledInstance, missing: Sequence[str], quantizer: ScheduledInstance) -> str:
    """The error for a pruner or regularizer whose weights ``quantizer``'s preparation renamed or removed."""
    return (f"{item.title} acts on {summarize_names(missing, 3)}, which {quantizer.title} moved when it prepared "
            "the model (e.g. fold_bn moves each folded layer into a SimulatedFoldedBatchNorm): prune and regularize "
            "without fold_bn, or fold BatchNorms in a later quantization-aware training run")
