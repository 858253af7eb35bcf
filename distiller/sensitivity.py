"""Pruning sensitivity analysis: how a trained model's accuracy drops as one weight tensor at a time is pruned.

Han et al. 2015, "Learning both Weights and Connections for Efficient Neural Networks" (section 4.4,
figure 6); structure (filter) sensitivity as in Li et al. 2017, "Pruning Filters for Efficient ConvNets"
(figure 2). Each tensor is pruned alone, on a copy of the model, at each sparsity level (weakest elements
or L1-weakest filters/channels first, with the layers coupled to those filters/channels when an example input
is given) and the copy is evaluated; the results show which layers tolerate pruning, e.g. to set per-layer
levels of a ``SensitivityPruner`` or an AGP schedule.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Union

import torch
from torch import nn

from .errors import ArgumentError, UnmatchedNameError
from .norms import expand_structure_mask, ranked_structure_mask, structures_lp_norm
from .pruning.dependency_masks import DependencyMasks
from .pruning.importance import LpImportance
from .pruning.masks import create_mask_level_criterion

msglogger = logging.getLogger(__name__)

__all__ = ["SENSITIVITY_GROUPS", "perform_sensitivity_analysis", "sensitivities_to_csv", "sensitivities_to_png"]

#: ``group`` values: what is pruned, and the structure type ranked for it.
SENSITIVITY_GROUPS = {"element": None, "filter": "Filters", "channel": "Channels"}

#: parameter name -> {sparsity level -> scores}
Sensitivities = Dict[str, Dict[float, tuple]]


#: parameter name -> mask, for the tensors one (weight, level) pruning zeroes
Masks = Dict[str, torch.Tensor]


def _pruning_mask(weight: torch.Tensor, sparsity_level: float, group: str) -> torch.Tensor:
    structure = SENSITIVITY_GROUPS[group]
    if structure is None:
        return create_mask_level_criterion(weight, sparsity_level)
    keep = ranked_structure_mask(structures_lp_norm(weight.detach(), structure, p=1), sparsity_level)
    return expand_structure_mask(keep.to(weight.dtype), weight.shape, structure)


def _prunable(model: nn.Module, net_params: Sequence[str]) -> list[str]:
    """The names of ``net_params`` that are 2D or 4D (linear and convolution weights)."""
    prunable = [name for name in net_params if model.get_parameter(name).dim() in (2, 4)]
    if not prunable:
        raise ArgumentError(f"sensitivity analysis prunes 2D or 4D weights (linear and convolution layers), and "
                            f"none of the {len(net_params)} parameters given is one ({list(net_params)[:5]}...); "
                            f"pass the names of such weights", argument="net_params")
    return prunable


def _check_arguments(model: nn.Module, net_params: Sequence[str], sparsities: Iterable[float], group: str) -> None:
    if group not in SENSITIVITY_GROUPS:
        raise ArgumentError(f"unknown sensitivity group {group!r}; expected one of {list(SENSITIVITY_GROUPS)}")
    names = [name for name, _ in model.named_parameters()]
    for name in net_params:
        if name not in names:
            raise UnmatchedNameError(name, names)
    for level in sparsities:
        if not 0.0 <= float(level) <= 1.0:
            raise ArgumentError(f"sparsity level {level} is outside [0, 1]")


def _masks_function(model: nn.Module, group: str, dummy_input: Any) -> Callable[[str, float], Masks]:
    """``fn(param_name, level) -> masks`` pruning one weight of ``model`` at a level: alone (``'element'``, or
    without ``dummy_input``), or with every tensor that thinning would shrink with its filters/channels."""
    structure = SENSITIVITY_GROUPS[group]
    if structure is None or dummy_input is None:
        return lambda name, level: {name: _pruning_mask(model.get_parameter(name).detach(), level, group)}
    dependency = DependencyMasks("sensitivity", structure, dummy_input)
    l1 = LpImportance(p=1)

    def coupled(name: str, level: float) -> Masks:
        return dependency.masks(model, [(name, model.get_parameter(name))], structure, l1, l1, level, 1,
                                math.floor, 0.0)
    return coupled


def perform_sensitivity_analysis(model: nn.Module, net_params: Sequence[str], sparsities: Sequence[float],
                                 test_func: Callable[..., tuple], group: str, dummy_input: Any = None,
                                 on_result: Optional[Callable[[str, float, tuple], None]] = None) -> Sensitivities:
    """Prunes each parameter of ``net_params`` alone, at each level of ``sparsities``, and evaluates the model.

    ``model`` is not changed: the pruning is done on a copy of the model, from the original values at every
    level. A level that zeroes no weight (level 0, or fewer filters than one to prune) does not change the
    model: its result is the unpruned model's, tested once for the whole analysis.

    With ``dummy_input``, filter and channel pruning are *group-aware*: the filters (channels) chosen in a weight
    are zeroed wherever thinning would remove them with it (see :mod:`distiller.pruning.dependency_masks`): the
    other convolutions adding to the same residual stream, their BatchNorm scales and biases, and the layers
    reading those channels; the ranking is by the L1 norms of the tested weight's filters (channels). Channels
    that thinning cannot remove (those reaching the model's output) stay, so a final classifier's filter curve
    is flat.

    Args:
        model: a trained model.
        net_params: names of the weights to test (parameters that are not 2D or 4D are skipped).
        sparsities: fractions in [0, 1] to prune, e.g. ``numpy.arange(0, 0.95, 0.05)``.
        test_func: called as ``test_func(model=pruned_copy)``; returns the scores to record, e.g.
            ``(top1, top5, loss)``.
        group: ``'element'`` (smallest magnitudes), ``'filter'`` or ``'channel'`` (smallest L1 norms; on a
            Linear weight: output rows / input columns).
        dummy_input: an example input of the model, for the group-aware filter and channel pruning (without
            it, each weight is pruned on its own, as Distiller did).
        on_result: called as ``on_result(param_name, sparsity, scores)`` after each result (e.g. to show
            progress).
    Returns:
        ``{param_name: {sparsity: tuple(test_func result)}}`` (ordered as given).
    Raises:
        ArgumentError: an unknown group, a level outside [0, 1], or no 2D/4D weight in ``net_params``.
        UnmatchedNameError: a name of ``net_params`` is not a parameter of ``model``.

    Example:
        >>> sens = perform_sensitivity_analysis(model, ['conv1.weight'], [0.0, 0.5, 0.9], test, 'filter',
        ...                                     dummy_input=torch.randn(1, 3, 32, 32))
        >>> sensitivities_to_csv(sens, 'sensitivity.csv')
    """
    net_params = [net_params] if isinstance(net_params, str) else list(net_params)
    _check_arguments(model, net_params, sparsities, group)
    pruned = copy.deepcopy(model)
    masks_of = _masks_function(pruned, group, dummy_input)
    sensitivities: Sensitivities = OrderedDict()
    unpruned: Optional[tuple] = None  # the scores of the model itself, tested once
    for param_name in _prunable(model, net_params):
        sensitivity = OrderedDict()
        for level in sparsities:
            level = float(level)
            masks = masks_of(param_name, level)
            if _zeroes_nothing(pruned, masks):  # e.g. level 0, or fewer structures than one to prune
                if unpruned is None:
                    unpruned = tuple(test_func(model=pruned))
                sensitivity[level] = unpruned
            else:
                msglogger.debug("Testing sensitivity of %s [%.1f%% %s sparsity]", param_name, 100 * level, group)
                with _masked(pruned, masks):
                    sensitivity[level] = tuple(test_func(model=pruned))
            if on_result is not None:
                on_result(param_name, level, sensitivity[level])
        sensitivities[param_name] = sensitivity
    return sensitivities


def _zeroes_nothing(model: nn.Module, masks: Masks) -> bool:
    """Whether applying ``masks`` leaves ``model``'s parameters as they are (every masked element is zero)."""
    return not any(bool(((mask == 0) & (model.get_parameter(name) != 0)).any()) for name, mask in masks.items())


@contextlib.contextmanager
def _masked(model: nn.Module, masks: Masks) -> Iterator[None]:
    """Runs the block with ``model``'s parameters multiplied by ``masks``, and restores them afterwards."""
    originals = {name: model.get_parameter(name).detach().clone() for name in masks}
    with torch.no_grad():
        for name, mask in masks.items():
            param = model.get_parameter(name)
            param.mul_(mask.to(device=param.device, dtype=param.dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            for name, original in originals.items():
                model.get_parameter(name).copy_(original)


def _score_names(sensitivities: Sensitivities) -> list[str]:
    """Distiller's ``top1, top5, loss`` when every result holds three scores, else ``score0, score1, ...``."""
    widths = {len(values) for sensitivity in sensitivities.values() for values in sensitivity.values()}
    return ["top1", "top5", "loss"] if widths <= {3} else [f"score{i}" for i in range(max(widths))]


def sensitivities_to_csv(sensitivities: Sensitivities, fname: str) -> None:
    """Writes ``sensitivities`` to the CSV file ``fname``: one row per (parameter, sparsity) with the recorded
    scores, under the header ``parameter, sparsity, top1, top5, loss`` (Distiller's; results with other
    lengths get ``score<i>`` columns instead)."""
    scores = _score_names(sensitivities)
    with open(fname, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["parameter", "sparsity", *scores])
        for param_name, sensitivity in sensitivities.items():
            for level, values in sensitivity.items():
                writer.writerow([param_name, level, *values])


#: inches of one panel of :func:`sensitivities_to_png`, and of each legend row below the panels
_PANEL_SIZE = (6.4, 4.8)
_LEGEND_ROW_HEIGHT = 0.25
_LEGEND_COLUMNS = 3
_DPI = 100
#: one line style per ten curves (matplotlib's default color cycle has ten colors)
_LINE_STYLES = ("-", "--", "-.", ":")


def _check_sensitivities(sensitivities: Sensitivities) -> None:
    if not isinstance(sensitivities, Mapping) or not sensitivities:
        raise ArgumentError("sensitivities must be a non-empty dict {param_name: {sparsity: scores}}, as "
                            f"perform_sensitivity_analysis returns; got {sensitivities!r}", argument="sensitivities")
    for param_name, sensitivity in sensitivities.items():
        if not isinstance(sensitivity, Mapping) or not sensitivity or not all(
                isinstance(scores, Sequence) and not isinstance(scores, str) and scores
                for scores in sensitivity.values()):
            raise ArgumentError(f"sensitivities['{param_name}'] must be a non-empty dict {{sparsity: (scores...)}}, "
                                f"got {sensitivity!r}", argument="sensitivities", location=(param_name,))


def _curve(param_name: str, sensitivity: Dict[float, tuple], n_scores: int) -> tuple[list, list]:
    """The sorted sparsity levels of ``sensitivity``, and the values of each of its first ``n_scores`` scores."""
    try:
        points = sorted((float(level), [float(score) for score in values[:n_scores]])
                        for level, values in sensitivity.items())
    except (TypeError, ValueError) as error:
        raise ArgumentError(f"sensitivities['{param_name}'] holds a sparsity level or a score that is not a "
                            f"number ({error})", argument="sensitivities", location=(param_name,)) from None
    return [level for level, _ in points], [[values[i] for _, values in points] for i in range(n_scores)]


def _image_format(fname: Union[str, os.PathLike]) -> str:
    from matplotlib.backend_bases import FigureCanvasBase
    formats = FigureCanvasBase.get_supported_filetypes()
    image_format = os.path.splitext(os.fspath(fname))[1][1:].lower() or "png"
    if image_format not in formats:
        raise ArgumentError(f"cannot plot to '{os.fspath(fname)}': '.{image_format}' is not an image format "
                            f"matplotlib writes; use one of {sorted(formats)}", argument="fname")
    return image_format


def sensitivities_to_png(sensitivities: Sensitivities, fname: Union[str, os.PathLike]) -> None:
    """Plots the sensitivity curves to the image file ``fname``: for each parameter, its top-1 score against
    sparsity, and beside it a top-5 panel when the scores are Distiller's ``(top1, top5, loss)`` (other results:
    their first score). One legend entry per parameter, below the panels.

    The format follows the extension of ``fname`` (``.png``, ``.svg``, ``.pdf``, ... any format matplotlib
    writes; PNG when there is none). The image is 640 x 480 pixels per panel, plus 25 pixels per legend row
    (three parameters a row).

    Args:
        sensitivities: ``{param_name: {sparsity: scores}}``, as :func:`perform_sensitivity_analysis` returns.
        fname: the output file.
    Raises:
        ArgumentError: empty or malformed ``sensitivities`` (no parameter, a parameter without levels, a score
            that is not a number) or an extension matplotlib does not write.
    """
    _check_sensitivities(sensitivities)
    image_format = _image_format(fname)
    names = _score_names(sensitivities)
    n_panels = 2 if names[:2] == ["top1", "top5"] else 1
    curves = {name: _curve(name, sensitivity, n_panels) for name, sensitivity in sensitivities.items()}
    # Figure without pyplot: no GUI backend is selected and no global figure state is kept
    from matplotlib.figure import Figure
    legend_rows = -(-len(curves) // _LEGEND_COLUMNS)
    width, height = _PANEL_SIZE
    figure = Figure(figsize=(width * n_panels, height + _LEGEND_ROW_HEIGHT * legend_rows), dpi=_DPI,
                    layout="constrained")
    for panel, axes in enumerate(figure.subplots(1, n_panels, squeeze=False)[0]):
        for i, (param_name, (levels, scores)) in enumerate(curves.items()):
            axes.plot(levels, scores[panel], marker=".", linestyle=_LINE_STYLES[i // 10 % len(_LINE_STYLES)],
                      label=param_name)
        axes.set_xlabel("sparsity")
        axes.set_ylabel(names[panel])
        axes.grid(True)
    figure.suptitle("Pruning sensitivity")
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=_LEGEND_COLUMNS)
    figure.savefig(fname, format=image_format, dpi=_DPI)
