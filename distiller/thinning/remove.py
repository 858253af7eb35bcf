"""Thinning after structure pruning: physically remove zero filters and unused channels.

``remove_filters`` removes channels whose filters are zero, ``remove_channels`` channels that no layer
reads (zero input-channel weights), ``contract_model`` both. A channel tied to others (a residual sum,
a concatenation feeding one layer, the convolutions around a depthwise one, a squeeze-excitation gate...)
goes only when it is zero or unused in all of them. Channels that cannot go (the model's input or output,
an op whose channel mapping is unknown, a view with a hard-coded size) stay, and the reason is logged.

Distiller-compatible signatures; ``dummy_input`` is new (graphs come from an example input), and so are
``scheduler``, ``round_to``, ``strict`` and ``leaf_modules``. Returns the :class:`ThinningRecipe`.

Quantized models are thinned as they are: the graph sees through quantization wrappers
(:mod:`distiller.quantization.layer_rules`), zero tests read the real weights (float copies, dequantized
integers), and the float copies and quantization parameters follow the weights
(:mod:`distiller.thinning.followers`), so the thinned quantized model computes what it computed before and
quantization-aware training goes on. Recorded after the quantization transform, the recipe replays after it.
"""
import logging

import torch

from ..graph import DependencyGraph
from ..masking import FP_BKP_PREFIX, ParameterMasker
from ..quantization.base import preparing_quantizer_class
from ..summaries.compute import model_params
from ..utils import model_device, normalize_module_name
from .plan import ThinningError, dead_channels, make_plan, weight_importance
from .recipe import ThinningRecipe
from .surgery import apply_edits

msglogger = logging.getLogger(__name__)

__all__ = ["remove_filters", "remove_channels", "contract_model", "speedup", "example_input", "mask_lookup"]


def example_input(model, dummy_input, dataset):
    """``dummy_input``, or zeros shaped like ``dataset``'s images.

    Raises:
        ThinningError: when neither is given.
    """
    if dummy_input is not None:
        return dummy_input
    if dataset is not None:
        from ..models import dataset_input_shape
        return torch.zeros(dataset_input_shape(dataset), device=model_device(model))
    raise ThinningError("thinning captures the model's graph from an example input: pass "
                        "dummy_input=torch.randn(1, C, H, W) (a batch of one is enough) or dataset=<name>")


def mask_lookup(zeros_mask_dict):
    """``fn(module_name, module) -> tensor or None``: the mask of the module's weight (kept under its name or
    under its float copy's, ``float_weight``, with quantization-aware training) when it has one, else None (the
    dependency graph then looks at the layer's real weight: see :meth:`~distiller.graph.DependencyGraph.weight`)."""
    masks = {normalize_module_name(name): masker for name, masker in (zeros_mask_dict or {}).items()}

    def weight_of(module_name, module):
        for attr in ("weight", FP_BKP_PREFIX + "weight"):
            mask = getattr(masks.get(normalize_module_name(f"{module_name}.{attr}")), "mask", None)
            if mask is not None:
                return mask.detach()
        return None
    return weight_of


def _warn_constants(deps, plan, group_type):
    """Warns when removed zero filters' channels still carry a constant (their conv's bias or their
    BatchNorm's shift) into a layer that reads them: the thinned model's outputs then differ from the
    masked model's, as with Distiller's thinning."""
    removed = torch.zeros(deps.size, dtype=torch.bool)
    for key, keep in plan.items():
        channels = deps.channels(*key)
        removed[channels[_removed(keep, channels.numel())]] = True
    drifting = removed & ~dead_channels(deps, group_type, exact=True)
    if not bool(drifting.any()):
        return
    sources = {}
    for (name, attr), slots in deps.analysis.usages.items():
        bias = getattr(deps.module(name), "bias", None)
        if deps.role(name, attr) == "out" and bias is not None:
            shifted = drifting[deps.table[slots]] & (bias.detach().cpu() != 0)
            sources[name] = int(shifted.sum())
    for note in deps.analysis.norm_constants:
        sources[note.module_name] = int((drifting[deps.table[note.slots]] & (note.constant != 0)).sum())
    names = [f"'{name}' ({count} ch)" for name, count in sources.items() if count]
    msglogger.warning("Thinning removed %d zero-filter channel(s) that still carry a constant (bias or BatchNorm "
                      "shift: %s%s) into the layers reading them: the thinned model's outputs differ from the "
                      "masked model's by that constant. Prune with group_dependency: Graph (it masks each filter's "
                      "bias and BatchNorm weight and bias with it) for an exact result.", int(drifting.sum()),
                      ", ".join(names[:5]), ", ..." if len(names) > 5 else "")


def _check_quantizer(model):
    """Thinning removes zero weights, which must stay zero after quantization.

    Raises:
        ThinningError: the model was prepared by a quantizer whose weight levels do not include 0 (DoReFa, PACT).
    """
    quantizer = preparing_quantizer_class(model)
    if quantizer is not None and not quantizer.keeps_zero_weights:
        raise ThinningError(f"the model was prepared by {quantizer.__name__}, whose weight levels do not include 0: "
                            "the zero filters and channels thinning removes are non-zero after quantization, so "
                            "removing them would change the outputs; thin the float model before quantizing it")


def _removed(keep, size):
    return torch.ones(size, dtype=torch.bool).index_fill_(0, keep, False)


def thin_by(model, zeros_mask_dict, group_type, dummy_input=None, dataset=None, optimizer=None, scheduler=None,
            round_to=1, strict=False, leaf_modules=()):
    """Removes the channels that are zero (``'Filters'``), unused (``'Channels'``) or either (``'Both'``)."""
    _check_quantizer(model)
    inputs = example_input(model, dummy_input, dataset)
    deps = DependencyGraph(model, inputs, leaf_modules, mask_lookup(zeros_mask_dict),
                           track_zeros=group_type != "Channels")
    importance = weight_importance(deps, "Channels" if group_type == "Channels" else "Filters")
    plan = make_plan(deps, lambda d: dead_channels(d, group_type), importance, round_to, strict)
    recipe = ThinningRecipe.from_plan(plan)
    if not recipe:
        msglogger.info("Thinning: nothing to remove")
        return recipe
    if group_type != "Channels":
        _warn_constants(deps, plan, group_type)
    mask_dicts = [d for d in (zeros_mask_dict, getattr(scheduler, "zeros_mask_dict", None)) if d is not None]
    before = model_params(model)
    apply_edits(model, recipe.modules, optimizer, list({id(d): d for d in mask_dicts}.values()), note_ranges=True)
    if scheduler is not None:
        record = recipe.to_record()
        scheduler.record_transform(record.pop("kind"), record)
    msglogger.info("Thinning shrank %d modules: %d -> %d parameters", len(recipe), before, model_params(model))
    return recipe


def remove_filters(model, zeros_mask_dict, arch=None, dataset=None, optimizer=None, dummy_input=None,
                   scheduler=None, round_to=1, strict=False, leaf_modules=()):
    """Removes the filters whose mask (or weight, without a mask) is all zero, with everything that reads
    their channels (BatchNorm channels, input channels of the next layers, Linear features).

    Args:
        model: the model, changed in place (DataParallel wrappers are fine).
        zeros_mask_dict: name -> ParameterMasker (e.g. ``scheduler.zeros_mask_dict``), or None to look at the
            weights; masks of the remaining channels are sliced.
        arch: unused, kept for Distiller compatibility (the graph comes from ``dummy_input``).
        dataset: a dataset name whose image shape serves as example input when ``dummy_input`` is None.
        optimizer: optional; its per-parameter state (momentum, Adam moments...) is sliced.
        dummy_input: example input (tensor or tuple) to capture the graph.
        scheduler: optional CompressionScheduler: the recipe is appended to its ``model_transforms`` (so
            ``load_checkpoint`` rebuilds the thinned shapes) and its masks are sliced.
        round_to: keep output channel counts multiples of this (keeping the strongest extra channels).
        strict: raise ThinningError instead of logging when zero filters cannot be removed.
        leaf_modules: module names/classes to treat as opaque when tracing.
    Returns:
        the :class:`ThinningRecipe` applied (empty when nothing could be removed).
    Raises:
        ThinningError: without an example input, or (``strict``) when zero filters must stay.

    Example:
        >>> recipe = remove_filters(model, scheduler.zeros_mask_dict, optimizer=optimizer,
        ...                         dummy_input=torch.randn(1, 3, 32, 32), scheduler=scheduler)
    """
    del arch
    return thin_by(model, zeros_mask_dict, "Filters", dummy_input, dataset, optimizer, scheduler, round_to, strict,
                   leaf_modules)


def remove_channels(model, zeros_mask_dict, arch=None, dataset=None, optimizer=None, dummy_input=None,
                    scheduler=None, round_to=1, strict=False, leaf_modules=()):
    """Removes the channels whose input weights are zero in every layer that reads them, with the filters
    (and BatchNorm channels) that produce them. Arguments and result as :func:`remove_filters`."""
    del arch
    return thin_by(model, zeros_mask_dict, "Channels", dummy_input, dataset, optimizer, scheduler, round_to, strict,
                   leaf_modules)


def contract_model(model, zeros_mask_dict, arch=None, dataset=None, optimizer=None, dummy_input=None,
                   scheduler=None, round_to=1, strict=False, leaf_modules=()):
    """Removes zero filters and unused channels in one pass (a channel goes when, at every layer reading
    it, it is zero or read with zero weights). Arguments and result as :func:`remove_filters`."""
    del arch
    return thin_by(model, zeros_mask_dict, "Both", dummy_input, dataset, optimizer, scheduler, round_to, strict,
                   leaf_modules)


def speedup(model, dummy_input, masks, optimizer=None, scheduler=None):
    """Physically removes what ``masks`` pruned (NNI's "speedup" step after fusion compression): the filters
    that are zero and the channels no layer reads any more, with everything coupled to them. Other zeros
    (element-wise sparsity) stay in place. A quantized model keeps its quantization: float copies, per-channel
    scales and zero points follow the kept channels, and nothing needs re-calibrating.

    Args:
        model: the model, changed in place.
        dummy_input: example input to capture the graph.
        masks: weight name -> 0/1 tensor (e.g. :meth:`distiller.compose.Pruner.get_masks`).
        optimizer, scheduler: as for :func:`remove_filters`.
    Returns:
        the :class:`ThinningRecipe` applied.
    """
    maskers = {}
    for name, mask in masks.items():
        maskers[name] = ParameterMasker(name)
        maskers[name].mask = mask
    return thin_by(model, maskers, "Both", dummy_input, None, optimizer, scheduler)
