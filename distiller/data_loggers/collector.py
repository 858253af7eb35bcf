"""Calibration statistics for post-training quantization: per-layer input/output ranges and moments.

``collect_quant_stats(model, test_fn)`` runs ``test_fn`` twice with hooks on every leaf module and
returns (and optionally saves as YAML) a mapping::

    conv1:
      inputs:
        0: {min: -2.1, max: 2.6, avg_min: -1.9, avg_max: 2.4, mean: 0.01, std: 1.0, b: 0.8,
            shape: [1, 3, 32, 32], total_numel: 3145728}
      output: {min: ..., max: ..., ...}

``min``/``max`` are the extremes over all batches; ``avg_min``/``avg_max`` average the per-sample
extremes over all samples; ``mean``/``std`` are over all elements; ``b`` is the mean absolute deviation
from the mean (the maximum-likelihood scale of a Laplace distribution, used by ACIQ clipping, Banner et
al. 2019), computed in the second pass once the mean is known. Inputs are recorded before the module
runs, so in-place modules do not corrupt their own input statistics.

In a distributed run each process can calibrate on its shard of the data and the processes' statistics are
combined exactly (``combine_processes=True``; :meth:`QuantCalibrationStatsCollector.combine_processes`): every
statistic is kept as a reduction that composes over disjoint shards (the extremes as a min and a max, the
averages as sums and counts), so all-reducing them gives every process the statistics of all the shards,
as one process collecting them over all the data would, up to the rounding of float32 batch sums.
"""
from __future__ import annotations

import copy
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Optional, Union

import torch
import yaml

from ..collectives import all_reduce_, gather_objects, is_distributed, is_main_process
from ..errors import ArgumentError, InputFileError, first_few
from ..modules import convert_functional_ops
from ..utils import match_names

__all__ = ["QuantCalibrationStatsCollector", "collect_quant_stats", "save_quant_stats", "load_quant_stats",
           "STATS_FILE_NAME", "leaf_modules"]

logger = logging.getLogger(__name__)

#: File name ``collect_quant_stats`` writes into ``save_dir`` (Distiller's name).
STATS_FILE_NAME = "acts_quantization_stats.yaml"
_STAT_KEYS = ("min", "max", "avg_min", "avg_max", "mean", "std", "b")

#: module name -> ``{'inputs': {index: record}, 'output': record}``, a record being statistic name -> value.
QuantStats = Mapping[str, Mapping[str, Any]]


class _RunningStats:
    """Accumulates the statistics of one tensor position (an input index or the output) of a module."""

    def __init__(self) -> None:
        self.min, self.max = math.inf, -math.inf
        self.sum_avg_min = self.sum_avg_max = 0.0
        self.samples = 0
        self.sum = self.sum_sq = self.sum_abs_dev = 0.0
        self.numel = 0
        self.shape: Optional[list[int]] = None

    def update(self, tensor: torch.Tensor) -> None:
        t = tensor.detach()
        flat = t.reshape(t.size(0), -1) if t.dim() > 1 else t.reshape(1, -1)
        if flat.numel() == 0:
            return
        flat = flat.float()
        per_sample_min, per_sample_max = torch.aminmax(flat, dim=1)
        # one transfer for all numbers; torch's pairwise summation keeps float32 sums accurate
        values = torch.stack([per_sample_min.min(), per_sample_max.max(), per_sample_min.sum(),
                              per_sample_max.sum(), flat.sum(), torch.linalg.vector_norm(flat) ** 2]).tolist()
        self.min, self.max = min(self.min, values[0]), max(self.max, values[1])
        self.sum_avg_min += values[2]
        self.sum_avg_max += values[3]
        self.sum += values[4]
        self.sum_sq += values[5]
        self.samples += flat.size(0)
        self.numel += flat.numel()
        self.shape = [1] + list(t.shape[1:]) if t.dim() > 1 else list(t.shape)

    def update_abs_dev(self, tensor: torch.Tensor) -> None:
        self.sum_abs_dev += (tensor.detach().float() - self.mean).abs().sum().item()

    @property
    def mean(self) -> float:
        return self.sum / self.numel

    def as_dict(self, with_b: bool) -> dict[str, Any]:
        variance = max(self.sum_sq / self.numel - self.mean ** 2, 0.0)
        record: dict[str, Any] = {"min": float(self.min), "max": float(self.max),
                  "avg_min": self.sum_avg_min / self.samples, "avg_max": self.sum_avg_max / self.samples,
                  "mean": float(self.mean), "std": math.sqrt(variance)}
        if with_b:
            record["b"] = self.sum_abs_dev / self.numel
        record.update(shape=self.shape, total_numel=int(self.numel))
        return record


def leaf_modules(model: torch.nn.Module, classes: Optional[Iterable[type[torch.nn.Module]]] = None
                 ) -> list[tuple[str, torch.nn.Module]]:
    """The named leaf modules of ``model`` (the root excluded), restricted to instances of ``classes``.

    Raises:
        ArgumentError: ``classes`` holds something that is not a module class, or no leaf module of
            ``model`` is an instance of any of them (the message lists the module types the model has).
    """
    leaves = [(n, m) for n, m in model.named_modules() if n and next(m.children(), None) is None]
    if classes is None:
        return leaves
    classes = tuple(classes)
    bad = [c for c in classes if not (isinstance(c, type) and issubclass(c, torch.nn.Module))]
    if bad:
        raise ArgumentError(f"classes must be torch.nn.Module subclasses, got {bad!r}", argument="classes")
    selected = [(n, m) for n, m in leaves if isinstance(m, classes)]
    if not selected:
        wanted = ", ".join(c.__name__ for c in classes)
        present = sorted({type(m).__name__ for _, m in leaves})
        raise ArgumentError(f"no module of the model is an instance of {wanted}; its leaf module types are "
                            f"{first_few(present, 10)}: pass classes= naming some of them", argument="classes")
    return selected


def _tensor_items(values: Sequence[Any]) -> list[tuple[int, torch.Tensor]]:
    return [(i, v) for i, v in enumerate(values) if isinstance(v, torch.Tensor) and v.is_floating_point()]


class QuantCalibrationStatsCollector:
    """Hooks the leaf modules of ``model`` and gathers the statistics described in the module docstring.

    Usage: ``start()``, run batches, ``start_second_pass()``, run the same batches, ``stop()``;
    ``value()`` returns the statistics, ``save(path)`` writes them as YAML.

    Args:
        model: the model (its module names become the keys).
        classes: module types to collect (default: every leaf module).
        inplace_runtime_check: raise if a module returns one of its inputs (an in-place op).
        disable_inplace_attrs: set the attributes in ``inplace_attr_names`` to False on every module.
        inplace_attr_names: attribute names marking in-place modules (``ReLU(inplace=True)``).
        modules_to_collect: module names / regular expressions to restrict collection to.
    Raises:
        distiller.errors.UnmatchedNameError: a name in ``modules_to_collect`` matches no module.
        distiller.errors.ArgumentError: no module of the model is an instance of ``classes``.
    """

    stat_name = "quant_calibration_stats"

    def __init__(self, model: torch.nn.Module, classes: Optional[Iterable[type[torch.nn.Module]]] = None,
                 inplace_runtime_check: bool = False, disable_inplace_attrs: bool = False,
                 inplace_attr_names: Collection[str] = ("inplace",),
                 modules_to_collect: Optional[Iterable[str]] = None) -> None:
        self.model = model
        self.inplace_runtime_check = inplace_runtime_check
        leaves = leaf_modules(model, classes)
        if modules_to_collect is not None:
            wanted = {n for names in match_names(modules_to_collect, [n for n, _ in model.named_modules() if n],
                                                 kind="module").values() for n in names}
            leaves = [(n, m) for n, m in leaves if n in wanted]
        self._modules = leaves
        if disable_inplace_attrs:
            for _, module in model.named_modules():
                for attr in inplace_attr_names:
                    if getattr(module, attr, None) is True:
                        setattr(module, attr, False)
        self._stats: OrderedDict[str, dict[str, Any]] = OrderedDict(
            (name, {"inputs": {}, "output": None}) for name, _ in leaves)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._second_pass = False
        self._combined: set[bool] = set()  # the passes (second or not) combined over the processes

    def start(self) -> QuantCalibrationStatsCollector:
        """Installs the hooks (first pass: ranges and moments)."""
        self.stop()
        for name, module in self._modules:
            self._handles.append(module.register_forward_pre_hook(self._input_hook(name)))
            self._handles.append(module.register_forward_hook(self._output_hook(name)))
        return self

    def start_second_pass(self) -> QuantCalibrationStatsCollector:
        """Switches to the second pass, which needs the first pass's means (for ``b``)."""
        self._second_pass = True
        return self.start()

    def stop(self) -> None:
        """Removes the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def reset(self) -> None:
        """Removes the hooks and forgets the statistics gathered so far."""
        self.stop()
        self._stats = OrderedDict((name, {"inputs": {}, "output": None}) for name, _ in self._modules)
        self._second_pass = False
        self._combined = set()

    def _update(self, stats: _RunningStats, tensor: torch.Tensor) -> None:
        if not self._second_pass:
            stats.update(tensor)
        elif stats.numel:
            stats.update_abs_dev(tensor)

    def _input_hook(self, name: str) -> Callable[[torch.nn.Module, tuple[Any, ...]], None]:
        def hook(module: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
            record = self._stats[name]["inputs"]
            for index, tensor in _tensor_items(inputs):
                if self._second_pass and index not in record:
                    continue
                self._update(record.setdefault(index, _RunningStats()), tensor)
        return hook

    def _output_hook(self, name: str) -> Callable[[torch.nn.Module, tuple[Any, ...], Any], None]:
        def hook(module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                return
            if self.inplace_runtime_check and any(output is t for t in inputs):
                raise RuntimeError(f"module '{name}' ({type(module).__name__}) ran in place, returning its input; "
                                   f"pass disable_inplace_attrs=True or build it with inplace=False")
            entry = self._stats[name]
            if entry["output"] is None:
                if self._second_pass:
                    return
                entry["output"] = _RunningStats()
            self._update(entry["output"], output)
        return hook

    def _positions(self) -> list[tuple[tuple[str, Union[int, str]], _RunningStats]]:
        """((module, input index or ``'output'``), statistics) of every tensor position that saw data, in the
        order of the modules."""
        positions = []
        for name, entry in self._stats.items():
            positions += [((name, i), s) for i, s in sorted(entry["inputs"].items()) if s.numel]
            if entry["output"] is not None and entry["output"].numel:
                positions.append(((name, "output"), entry["output"]))
        return positions

    def _shared_positions(self) -> list[_RunningStats]:
        """The statistics of every tensor position where some process saw data: the same list on every process
        (in the order of the modules), created empty where this process saw none."""
        shapes: dict[tuple[str, Union[int, str]], Optional[list[int]]] = {}
        for seen in gather_objects({key: stats.shape for key, stats in self._positions()}):
            for key, shape in seen.items():
                shapes.setdefault(key, shape)
        order = {name: rank for rank, name in enumerate(self._stats)}
        shared = []
        for name, index in sorted(shapes, key=lambda k: (order[k[0]], k[1] == "output", k[1] if k[1] != "output"
                                                         else 0)):
            entry = self._stats[name]
            if index == "output":
                stats = entry["output"] = entry["output"] or _RunningStats()
            else:
                stats = entry["inputs"].setdefault(index, _RunningStats())
            stats.shape = stats.shape or shapes[(name, index)]
            shared.append(stats)
        return shared

    def combine_processes(self) -> None:
        """Combines the statistics every process of the initialized process group gathered in this pass on its
        shard of the data, so that every process holds those of all the shards; nothing outside a process group.

        Call it on every process once after each pass (:func:`collect_quant_stats` does with
        ``combine_processes=True``). After the first pass, the extremes are reduced by min and max, the sums
        behind the averages (per-sample extremes, values, squares) and the sample and element counts by sum: one
        message each (8 bytes per tensor position for ``min`` and ``max``, 32 for the sums, 16 for the counts).
        The second pass, which measures deviations from the combined mean, sums the absolute deviations (8
        bytes per position). Positions seen by only some processes (a process whose shard was empty) count
        from what the others saw.

        Raises:
            RuntimeError: the pass was already combined (its sums would count twice).
        """
        if not is_distributed():
            return
        if self._second_pass in self._combined:
            raise RuntimeError("combine_processes: this pass was combined already")
        self._combined.add(self._second_pass)
        if self._second_pass:
            stats = [s for _, s in self._positions()]
            deviations = torch.tensor([s.sum_abs_dev for s in stats], dtype=torch.float64)
            all_reduce_([deviations])
            for s, deviation in zip(stats, deviations.tolist()):
                s.sum_abs_dev = deviation
            return
        stats = self._shared_positions()
        lows = torch.tensor([s.min for s in stats], dtype=torch.float64)
        highs = torch.tensor([s.max for s in stats], dtype=torch.float64)
        sums = torch.tensor([[s.sum_avg_min, s.sum_avg_max, s.sum, s.sum_sq] for s in stats],
                            dtype=torch.float64).reshape(-1, 4)
        counts = torch.tensor([[s.samples, s.numel] for s in stats], dtype=torch.int64).reshape(-1, 2)
        all_reduce_([lows], torch.distributed.ReduceOp.MIN)
        all_reduce_([highs], torch.distributed.ReduceOp.MAX)
        all_reduce_([sums, counts])
        for s, low, high, total, count in zip(stats, lows.tolist(), highs.tolist(), sums.tolist(), counts.tolist()):
            s.min, s.max = low, high
            s.sum_avg_min, s.sum_avg_max, s.sum, s.sum_sq = total
            s.samples, s.numel = count

    def value(self) -> OrderedDict[str, dict[str, Any]]:
        """The statistics as plain data (modules that never ran are omitted)."""
        result: OrderedDict[str, dict[str, Any]] = OrderedDict()
        for name, entry in self._stats.items():
            inputs = {i: s.as_dict(self._second_pass) for i, s in sorted(entry["inputs"].items()) if s.numel}
            output = entry["output"]
            if not inputs and (output is None or not output.numel):
                continue
            result[name] = {"inputs": inputs}
            if output is not None and output.numel:
                result[name]["output"] = output.as_dict(self._second_pass)
        return result

    def save(self, fname: Union[str, os.PathLike[str]]) -> Union[str, os.PathLike[str]]:
        """Writes ``value()`` to the YAML file ``fname``; returns its path."""
        return save_quant_stats(self.value(), fname)


def save_quant_stats(stats: QuantStats, fname: Union[str, os.PathLike[str]]) -> Union[str, os.PathLike[str]]:
    """Writes calibration statistics to a YAML file (plain types only, loadable with ``yaml.safe_load``)."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    directory = os.path.dirname(os.path.abspath(fname))
    os.makedirs(directory, exist_ok=True)
    with open(fname, "w") as stream:
        yaml.safe_dump({name: plain(entry) for name, entry in stats.items()}, stream, sort_keys=False)
    return fname


def load_quant_stats(stats_or_path: Union[str, os.PathLike[str], QuantStats]) -> QuantStats:
    """Returns the statistics from a YAML file path (or validates an already loaded mapping).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the content is not a ``{module: {inputs: {i: stats}, output: stats}}`` mapping, or a
            statistics record lacks one of min/max/avg_min/avg_max/mean/std.
    """
    source = "calibration statistics"
    if isinstance(stats_or_path, (str, os.PathLike)):
        source = os.fspath(stats_or_path)
        if not os.path.isfile(source):
            raise InputFileError(f"calibration statistics file '{source}' does not exist")
        with open(source) as stream:
            stats_or_path = yaml.safe_load(stream)
    if not isinstance(stats_or_path, dict):
        raise ArgumentError(f"{source}: expected a mapping of module names to statistics")
    for name, entry in stats_or_path.items():
        if not isinstance(entry, dict) or not ({"inputs", "output"} & set(entry)):
            raise ArgumentError(f"{source}: entry '{name}' must have 'inputs' and/or 'output' statistics")
        records = [(f"{name}.inputs.{i}", r) for i, r in (entry.get("inputs") or {}).items()]
        if entry.get("output") is not None:
            records.append((f"{name}.output", entry["output"]))
        for where, record in records:
            missing = [k for k in _STAT_KEYS[:-1] if not isinstance(record, dict) or k not in record]
            if missing:
                raise ArgumentError(f"{source}: '{where}' lacks {missing}; re-collect with collect_quant_stats")
    return stats_or_path


def collect_quant_stats(model: torch.nn.Module, test_fn: Callable[[torch.nn.Module], Any],
                        save_dir: Optional[Union[str, os.PathLike[str]]] = None,
                        classes: Optional[Iterable[type[torch.nn.Module]]] = None, inplace_runtime_check: bool = False,
                        disable_inplace_attrs: bool = False, inplace_attr_names: Collection[str] = ("inplace",),
                        modules_to_collect: Optional[Iterable[str]] = None, combine_processes: bool = False
                        ) -> OrderedDict[str, dict[str, Any]]:
    """Collects calibration statistics of ``model`` by running ``test_fn(model)`` twice.

    Statistics are gathered on a copy of ``model`` in which functional adds/concats/products were turned
    into ``distiller.modules`` (:func:`distiller.modules.convert_functional_ops`), so they include the
    layers that :class:`PostTrainLinearQuantizer` quantizes; ``model`` itself is not modified.

    Args:
        model: the float model.
        test_fn: ``fn(model)`` running the calibration batches (e.g. a fraction of the test set).
        save_dir: if given, the statistics are also written to ``save_dir/acts_quantization_stats.yaml``.
        classes, inplace_runtime_check, disable_inplace_attrs, inplace_attr_names, modules_to_collect:
            see :class:`QuantCalibrationStatsCollector`.
        combine_processes: in a distributed run in which every process calls this function with its shard
            of the calibration data, combine the processes' statistics after each pass
            (:meth:`QuantCalibrationStatsCollector.combine_processes`): every process returns those of all the
            shards. Only rank 0 writes ``save_dir``'s file then.
    Returns:
        The statistics mapping.
    Example:
        >>> stats = collect_quant_stats(model, lambda m: evaluate(m, calib_loader), save_dir=run_dir)
    """
    calibrated = convert_functional_ops(copy.deepcopy(model))
    collector = QuantCalibrationStatsCollector(calibrated, classes, inplace_runtime_check, disable_inplace_attrs,
                                               inplace_attr_names, modules_to_collect)
    was_training = calibrated.training
    calibrated.eval()
    with torch.no_grad():
        for start in (collector.start, collector.start_second_pass):
            start()
            test_fn(calibrated)
            collector.stop()
            if combine_processes:
                collector.combine_processes()
    calibrated.train(was_training)
    stats = collector.value()
    if not stats:
        raise RuntimeError("collect_quant_stats: no module ran during test_fn; check that it runs the model")
    if save_dir is not None and (is_main_process() or not combine_processes):
        path = save_quant_stats(stats, os.path.join(save_dir, STATS_FILE_NAME))
        logger.info("Saved quantization calibration statistics of %d modules to %s", len(stats), path)
    return stats
