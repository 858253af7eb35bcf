"""Activation histograms for quantization analysis (Distiller's ``collect_histograms``).

A histogram needs its range before the first batch, so collection takes two passes over the data: the
first gathers each tensor's min/max (:func:`~distiller.data_loggers.collect_quant_stats`), the second
bins the values with ``torch.histc`` into ``nbins`` equal bins over that range. ``value()`` (and the
saved ``acts_histograms.pt``, loadable with ``torch.load(weights_only=True)``) is::

    {'conv1': {'inputs': {0: {'hist': int64[nbins], 'bin_centroids': float32[nbins], 'total_numel': 98304}},
               'output': {'hist': ..., 'bin_centroids': ..., 'total_numel': ...}}}
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Optional, Union

import torch

from ..errors import ArgumentError
from .activation_stats import ActivationStatsCollector, PathLike
from .collector import QuantStats, _tensor_items, collect_quant_stats, load_quant_stats
from .context import collector_context

__all__ = ["ActivationHistogramsCollector", "collect_histograms", "HISTOGRAMS_FILE_NAME"]

logger = logging.getLogger(__name__)

#: File name ``collect_histograms`` writes into ``save_dir`` (Distiller's name).
HISTOGRAMS_FILE_NAME = "acts_histograms.pt"
#: Folder, beside the saved histograms, that receives one image per module.
IMAGES_DIR = "histogram_imgs"


class _Histogram:
    """Counts of one tensor position (an input index or the output) of a module over a fixed range."""

    def __init__(self, low: float, high: float, nbins: int) -> None:
        if not high > low:  # a constant tensor: centre its value in a unit-wide range
            low, high = low - 0.5, low + 0.5
        self.low, self.high, self.nbins = float(low), float(high), nbins
        self.counts: Optional[torch.Tensor] = None
        self.numel = 0

    def update(self, tensor: torch.Tensor) -> None:
        # histc drops values outside [low, high]: clamping counts them in the edge bins, so the counts
        # always add up to total_numel even when this pass sees values the range pass did not
        values = tensor.detach().float().clamp(self.low, self.high)
        counts = torch.histc(values, bins=self.nbins, min=self.low, max=self.high).long()
        self.counts = counts if self.counts is None else self.counts + counts
        self.numel += values.numel()

    def edges(self) -> torch.Tensor:
        return torch.linspace(self.low, self.high, self.nbins + 1, dtype=torch.float64)

    def as_dict(self) -> dict[str, Any]:
        edges = self.edges()
        counts = self.counts if self.counts is not None else torch.zeros(self.nbins, dtype=torch.long)
        return {"hist": counts.cpu(), "bin_centroids": ((edges[:-1] + edges[1:]) / 2).float(),
                "total_numel": int(self.numel)}


class ActivationHistogramsCollector(ActivationStatsCollector):
    """Histograms of the inputs and output of each hooked module, over the ranges of a prior stats pass.

    Args:
        model: the model.
        activation_stats: the statistics of :func:`~distiller.data_loggers.collect_quant_stats` (or the
            path of the YAML file it saved) for the same model; their ``min``/``max`` set each range.
        classes: module types to hook (None: every leaf module).
        nbins: number of bins of each histogram.
        save_hist_imgs: :meth:`save` also draws one image per module (matplotlib).
        hist_imgs_ext: image file extension (a format matplotlib writes: ``.svg``, ``.png``, ``.pdf``, ...).
    Raises:
        ArgumentError: bad ``nbins`` or ``hist_imgs_ext``, ``activation_stats`` is not a statistics mapping,
            no module is an instance of ``classes``; while running, a module runs that
            ``activation_stats`` has no range for.
    Example:
        >>> stats = collect_quant_stats(model, test_fn)
        >>> histograms = ActivationHistogramsCollector(model, stats, nbins=256)
        >>> with collector_context(histograms):
        ...     test_fn(model)
        >>> histograms.save("run/acts_histograms.pt")
    """

    def __init__(self, model: torch.nn.Module, activation_stats: Union[QuantStats, PathLike],
                 classes: Optional[Iterable[type[torch.nn.Module]]] = None, nbins: int = 2048,
                 save_hist_imgs: bool = False, hist_imgs_ext: str = ".svg") -> None:
        super().__init__(model, "histogram", classes)
        self.hist_imgs_ext = _check_histogram_args(nbins, save_hist_imgs, hist_imgs_ext)
        self.act_stats = load_quant_stats(activation_stats)
        self.nbins = nbins
        self.save_hist_imgs = save_hist_imgs
        self._hists: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def _hooks(self, name: str, module: torch.nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        # inputs are binned before the module runs: an in-place module would overwrite them
        def input_hook(module: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
            for index, tensor in _tensor_items(inputs):
                self._histogram(name, index).update(tensor)

        def output_hook(module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                self._histogram(name, None).update(output)
        return [module.register_forward_pre_hook(input_hook), module.register_forward_hook(output_hook)]

    def _histogram(self, name: str, index: Optional[int]) -> _Histogram:
        """The histogram of input ``index`` (None: the output) of module ``name``, created on first use."""
        entry = self._hists.setdefault(name, {"inputs": {}, "output": None})
        histogram = entry["output"] if index is None else entry["inputs"].get(index)
        if histogram is None:
            record = self._stats_record(name, index)
            histogram = _Histogram(record["min"], record["max"], self.nbins)
            if index is None:
                entry["output"] = histogram
            else:
                entry["inputs"][index] = histogram
        return histogram

    def _stats_record(self, name: str, index: Optional[int]) -> Mapping[str, Any]:
        module_stats = self.act_stats.get(name) or {}
        if index is None:
            record = module_stats.get("output")
        else:
            inputs = module_stats.get("inputs") or {}
            record = inputs.get(index, inputs.get(str(index)))
        if record is None:
            what = "output" if index is None else f"input {index}"
            raise ArgumentError(f"activation_stats has no range for the {what} of module '{name}': run "
                                f"distiller.data_loggers.collect_quant_stats on this model and data first",
                                argument="activation_stats")
        return record

    def _clear(self) -> None:
        self._hists = OrderedDict()

    def value(self) -> OrderedDict[str, dict[str, Any]]:
        """module name -> ``{'inputs': {index: histogram}, 'output': histogram}`` (see the module docstring),
        for the modules that ran; plain tensors, ints and dicts."""
        result: OrderedDict[str, dict[str, Any]] = OrderedDict()
        for name, _ in self._modules:
            entry = self._hists.get(name)
            if entry is None:
                continue
            result[name] = {"inputs": {i: h.as_dict() for i, h in sorted(entry["inputs"].items())}}
            if entry["output"] is not None:
                result[name]["output"] = entry["output"].as_dict()
        return result

    def save(self, fname: PathLike) -> str:
        """Writes :meth:`value` to ``fname`` with ``torch.save``; with ``save_hist_imgs``, also one image per
        module into ``histogram_imgs/`` beside it. Returns the path."""
        path = os.fspath(fname)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save(self.value(), path)
        if self.save_hist_imgs:
            images_dir = os.path.join(os.path.dirname(os.path.abspath(path)), IMAGES_DIR)
            os.makedirs(images_dir, exist_ok=True)
            for name, entry in self._hists.items():
                _draw_module(name, entry, os.path.join(images_dir, name + self.hist_imgs_ext))
            logger.info("Saved histogram images of %d modules to %s", len(self._hists), images_dir)
        return path


def _check_histogram_args(nbins: Any, save_hist_imgs: bool, hist_imgs_ext: str) -> str:
    """Validates the histogram options; returns the image extension with its leading dot."""
    if isinstance(nbins, bool) or not isinstance(nbins, int) or nbins < 1:
        raise ArgumentError(f"nbins must be a positive integer, got {nbins!r}", argument="nbins")
    extension = hist_imgs_ext if hist_imgs_ext.startswith(".") else "." + hist_imgs_ext
    if save_hist_imgs:
        from matplotlib.backend_bases import FigureCanvasBase
        formats = FigureCanvasBase.get_supported_filetypes()
        if extension[1:].lower() not in formats:
            raise ArgumentError(f"hist_imgs_ext '{hist_imgs_ext}' is not an image format matplotlib writes; "
                                f"use one of {sorted(formats)}", argument="hist_imgs_ext")
    return extension


def _draw_module(name: str, entry: Mapping[str, Any], path: str) -> None:
    """One image with a panel per input and the output of module ``name``."""
    # Figure without pyplot: no GUI backend is selected and no global figure state is kept
    from matplotlib.figure import Figure
    panels = [(f"input {i}", h) for i, h in sorted(entry["inputs"].items())]
    if entry["output"] is not None:
        panels.append(("output", entry["output"]))
    figure = Figure(figsize=(7, 2.5 * len(panels)), layout="constrained")
    for axes, (label, histogram) in zip(figure.subplots(len(panels), 1, squeeze=False)[:, 0], panels):
        counts = histogram.as_dict()["hist"]
        axes.stairs(counts.numpy(), histogram.edges().numpy(), fill=True)
        axes.set_title(f"{name} {label} ({histogram.numel} values)")
        axes.set_xlabel("value")
        axes.set_ylabel("count")
    figure.savefig(path)


def collect_histograms(model: torch.nn.Module, test_fn: Callable[[torch.nn.Module], Any],
                       save_dir: Optional[PathLike] = None,
                       activation_stats: Optional[Union[QuantStats, PathLike]] = None,
                       classes: Optional[Iterable[type[torch.nn.Module]]] = None, nbins: int = 2048,
                       save_hist_imgs: bool = False, hist_imgs_ext: str = ".svg") -> OrderedDict[str, dict[str, Any]]:
    """Activation histograms of ``model`` over the batches that ``test_fn(model)`` runs.

    Without ``activation_stats``, a first pass of :func:`collect_quant_stats` (which calls ``test_fn`` twice)
    measures the ranges; the histogram pass then calls ``test_fn(model)`` once more. The model runs in eval
    mode without gradients; its training mode is restored afterwards.

    Args:
        model: the model.
        test_fn: ``fn(model)`` running the batches (e.g. a portion of the test set).
        save_dir: if given, the histograms are saved to ``save_dir/acts_histograms.pt`` (and the ranges of a
            first pass to ``save_dir/acts_quantization_stats.yaml``).
        activation_stats: ranges from an earlier :func:`collect_quant_stats` (mapping or YAML path); skips
            the first pass.
        classes, nbins, save_hist_imgs, hist_imgs_ext: see :class:`ActivationHistogramsCollector`.
    Returns:
        The histograms (see :meth:`ActivationHistogramsCollector.value`).
    Example:
        >>> hists = collect_histograms(model, lambda m: evaluate(m, calib_loader), save_dir=run_dir, nbins=256)
    """
    _check_histogram_args(nbins, save_hist_imgs, hist_imgs_ext)
    classes = None if classes is None else tuple(classes)
    if activation_stats is None:
        logger.info("Activation histograms, pass 1: ranges")
        activation_stats = collect_quant_stats(model, test_fn, save_dir=save_dir, classes=classes)
    collector = ActivationHistogramsCollector(model, activation_stats, classes, nbins, save_hist_imgs,
                                              hist_imgs_ext)
    logger.info("Activation histograms, pass 2: %d bins per tensor", nbins)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), collector_context(collector):
            test_fn(model)
    finally:
        model.train(was_training)
    histograms = collector.value()
    if not histograms:
        raise RuntimeError("collect_histograms: no hooked module ran during test_fn; check that it runs the model")
    if save_dir is not None:
        path = collector.save(os.path.join(save_dir, HISTOGRAMS_FILE_NAME))
        logger.info("Saved activation histograms of %d modules to %s", len(histograms), path)
    return histograms
