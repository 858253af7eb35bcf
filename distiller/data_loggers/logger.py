"""Loggers that send training statistics to Python logging, TensorBoard and CSV files.

Each logger implements the same four hooks, so an application fans one call out to all of them::

    loggers = [PythonLogger(msglogger), TensorBoardLogger(run_dir), CsvLogger(logdir=run_dir)]
    stats = ('Performance/Validation/', OrderedDict([('Loss', 0.31), ('Top1', 91.2)]))
    distiller.data_loggers.log_training_progress(stats, None, epoch, 0, 1, 1, loggers)
    distiller.data_loggers.log_weights_sparsity(model, epoch, loggers)

``stats_dict`` is Distiller's ``(prefix, OrderedDict(name -> number))`` tuple; a plain mapping is
accepted too (empty prefix).
"""
from __future__ import annotations

import csv
import logging
import os
import typing
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Protocol, Union

import torch
from tabulate import tabulate

__all__ = ["DataLogger", "PythonLogger", "TensorBoardLogger", "CsvLogger", "weights_sparsity_rows", "format_seconds",
           "model_buffer_values", "log_training_progress", "log_weights_sparsity", "log_activation_statistics",
           "log_model_buffers"]


#: A number as the loggers accept it: a Python number or a one-element tensor.
Number = Union[int, float, torch.Tensor]
#: Distiller's ``(prefix, OrderedDict(name -> number))`` statistics, or a plain mapping (empty prefix).
StatsDict = Union[tuple[str, Mapping[str, Number]], Mapping[str, Number]]
#: ``(name, tensor)`` pairs, e.g. ``model.named_parameters()``.
NamedTensors = Iterable[tuple[str, torch.Tensor]]
#: buffer name -> ``(module name, values)`` per module holding it (see :func:`model_buffer_values`).
BufferValues = OrderedDict[str, list[tuple[str, list[float]]]]


class ActivationStatsCollector(Protocol):
    """What :func:`log_activation_statistics` needs of a collector: its statistic's name and values."""

    stat_name: str

    def value(self) -> Mapping[str, Any]:
        """layer name -> the statistic's value."""


def _split_stats(stats_dict: StatsDict) -> tuple[str, OrderedDict[str, Union[int, float]]]:
    """Returns ``(prefix, OrderedDict)`` from a ``(prefix, mapping)`` tuple or a plain mapping."""
    if isinstance(stats_dict, tuple):
        prefix, stats = stats_dict
    else:
        prefix, stats = "", stats_dict
    return prefix, OrderedDict((name, _number(value)) for name, value in stats.items())


def format_seconds(seconds: float) -> str:
    """``h:mm:ss`` of a duration in seconds (rounded to the second)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _number(value: Number) -> Union[int, float]:
    """A Python int/float from a number or a one-element tensor."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    return value if isinstance(value, int) else float(value)


def weights_sparsity_rows(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Per-weight sparsity of ``model``: the multi-dimensional ``*weight`` parameters (conv, linear, ...).

    Returns:
        list of dicts with ``parameter``, ``shape``, ``volume``, ``nnz``, ``sparsity`` (percent), followed
        by a ``'Total'`` row over all of them.
    """
    rows, total, total_nnz = [], 0, 0
    for name, param in model.named_parameters():
        if not name.endswith("weight") or param.dim() < 2:
            continue
        volume, nnz = param.numel(), int(torch.count_nonzero(param.detach()))
        rows.append({"parameter": name, "shape": "x".join(map(str, param.shape)), "volume": volume,
                     "nnz": nnz, "sparsity": 100.0 * (1 - nnz / volume)})
        total, total_nnz = total + volume, total_nnz + nnz
    rows.append({"parameter": "Total", "shape": "", "volume": total, "nnz": total_nnz,
                 "sparsity": 100.0 * (1 - total_nnz / total) if total else 0.0})
    return rows


def model_buffer_values(model: torch.nn.Module, buffer_names: Sequence[str]) -> BufferValues:
    """The values of the tensors named ``buffer_names`` held by ``model``'s modules (e.g. PACT's
    ``clip_val``, a quantizer's scale buffers).

    Returns:
        dict buffer name -> list of ``(module name, [values...])``, in module order; modules without such a
        tensor attribute (or list of tensors) are skipped.
    """
    found: BufferValues = OrderedDict((name, []) for name in buffer_names)
    for module_name, module in model.named_modules():
        for buffer_name in buffer_names:
            value = getattr(module, buffer_name, None)
            if isinstance(value, torch.Tensor):
                values = value.detach().reshape(-1).tolist()
            elif isinstance(value, (list, tuple, torch.nn.ParameterList)) and value and all(
                    isinstance(v, torch.Tensor) and v.numel() == 1 for v in value):
                values = [v.item() for v in value]
            else:
                continue
            found[buffer_name].append((module_name, values))
    return found


def _distribution_rows(named_params: NamedTensors) -> list[dict[str, Any]]:
    rows = []
    for name, param in named_params:
        values = param.detach().float()
        rows.append({"parameter": name, "mean": values.mean().item(),
                     "std": values.std().item() if values.numel() > 1 else 0.0,
                     "min": values.min().item(), "max": values.max().item()})
    return rows


class DataLogger:
    """Base class: the hooks an application calls. Each default ignores the call, for loggers (user
    subclasses included) whose backend has no use for that kind of data."""

    def log_training_progress(self, stats_dict: StatsDict, epoch: int, completed: int, total: int, freq: int) -> None:
        """Logs scalar statistics after ``completed`` of ``total`` steps of ``epoch`` (-1: testing)."""

    def log_activation_statistic(self, phase: str, stat_name: str, activation_stats: Mapping[str, Number],
                                 epoch: int) -> None:
        """Logs ``activation_stats`` (layer name -> number) of statistic ``stat_name`` in ``phase``."""

    def log_weights_sparsity(self, model: torch.nn.Module, epoch: int) -> None:
        """Logs the sparsity of every weight tensor of ``model`` (see :func:`weights_sparsity_rows`)."""

    def log_weights_distribution(self, named_params: NamedTensors, steps_completed: int) -> None:
        """Logs the value distribution of ``named_params`` (iterable of ``(name, tensor)``)."""

    def log_model_buffers(self, model: torch.nn.Module, buffer_names: Sequence[str], tag_prefix: str, epoch: int,
                          completed: int, total: int, freq: int) -> None:
        """Logs the values of the buffers named ``buffer_names`` (see :func:`model_buffer_values`)."""

    def close(self) -> None:
        """Flushes and releases the backend."""


#: One logger or a list of them.
Loggers = Union[DataLogger, Sequence[DataLogger]]


class PythonLogger(DataLogger):
    """Writes statistics as text lines and tables to a :class:`logging.Logger`."""

    def __init__(self, logger: logging.Logger) -> None:
        self.pylogger = logger

    def log_training_progress(self, stats_dict: StatsDict, epoch: int, completed: int, total: int, freq: int) -> None:
        """One line: the step, each statistic and, when the statistics hold Distiller's ``Time`` (seconds per
        mini-batch) and steps remain, the time left in the epoch (``ETA h:mm:ss``)."""
        _, stats = _split_stats(stats_dict)
        head = (f"Epoch: [{epoch}][{completed:5d}/{int(total):5d}]" if epoch > -1
                else f"Test: [{completed:5d}/{int(total):5d}]")
        body = "    ".join(f"{name} {value}" if isinstance(value, int) else f"{name} {value:.6f}"
                           for name, value in stats.items())
        remaining = int(total) - completed
        if "Time" in stats and remaining > 0:
            body += f"    ETA {format_seconds(stats['Time'] * remaining)}"
        self.pylogger.info("%s    %s", head, body)

    def log_activation_statistic(self, phase: str, stat_name: str, activation_stats: Mapping[str, Number],
                                 epoch: int) -> None:
        table = tabulate([(layer, _number(value)) for layer, value in activation_stats.items()],
                         headers=["Layer", stat_name], tablefmt="psql", floatfmt=".4f")
        self.pylogger.info("Epoch %d %s activation statistic '%s':\n%s", epoch, phase, stat_name, table)

    def log_weights_sparsity(self, model: torch.nn.Module, epoch: int) -> None:
        """Distiller's full sparsity table (:func:`~distiller.summaries.weights_sparsity_summary`: columns,
        rows, channels, kernels, filters and elements, value statistics, the total row) and the total."""
        # Imported here: distiller.utils imports this module early, before the summaries package can load.
        from ..summaries.sparsity import weights_sparsity_tbl_summary

        table, total = weights_sparsity_tbl_summary(model, return_total_sparsity=True)
        self.pylogger.info("Parameters (epoch %d):\n%s\nTotal sparsity: %.2f%%", epoch, table, total)

    def log_weights_distribution(self, named_params: NamedTensors, steps_completed: int) -> None:
        rows = _distribution_rows(named_params)
        if rows:
            self.pylogger.info("Weights distribution at step %d:\n%s", steps_completed,
                               tabulate([list(r.values()) for r in rows], headers=list(rows[0]),
                                        tablefmt="psql", floatfmt=".5f"))

    def log_model_buffers(self, model: torch.nn.Module, buffer_names: Sequence[str], tag_prefix: str, epoch: int,
                          completed: int, total: int, freq: int) -> None:
        for buffer_name, rows in model_buffer_values(model, buffer_names).items():
            if not rows:
                continue
            width = max(len(values) for _, values in rows)
            table = tabulate([[name, *values] for name, values in rows],
                             headers=["Layer"] + [f"Val_{i}" for i in range(width)], tablefmt="psql",
                             floatfmt=".4f")
            self.pylogger.info("%s%s (epoch %d, step %d):\n%s", tag_prefix, buffer_name, epoch, completed, table)


class TensorBoardLogger(DataLogger):
    """Writes scalars and histograms to TensorBoard event files in ``logdir``.

    Training progress goes to tag ``<prefix><name>`` at global step ``epoch * total + completed``;
    weight sparsity to ``sparsity/weights/<param>`` (percent) at step ``epoch``.
    """

    def __init__(self, logdir: str, comment: str = "") -> None:
        # Imported here: loading tensorboard takes seconds and is only needed by this logger.
        from torch.utils.tensorboard import SummaryWriter
        self.logdir = logdir
        self.writer = SummaryWriter(log_dir=logdir, comment=comment)

    def log_training_progress(self, stats_dict: StatsDict, epoch: int, completed: int, total: int, freq: int) -> None:
        prefix, stats = _split_stats(stats_dict)
        step = epoch * int(total) + completed if epoch > -1 else completed
        for name, value in stats.items():
            self.writer.add_scalar(prefix + name, value, step)
        self.writer.flush()

    def log_activation_statistic(self, phase: str, stat_name: str, activation_stats: Mapping[str, Number],
                                 epoch: int) -> None:
        for layer, value in activation_stats.items():
            self.writer.add_scalar(f"{stat_name}/{phase}/{layer}", _number(value), epoch)
        self.writer.flush()

    def log_weights_sparsity(self, model: torch.nn.Module, epoch: int) -> None:
        for row in weights_sparsity_rows(model):
            tag = "total" if row["parameter"] == "Total" else row["parameter"]
            self.writer.add_scalar(f"sparsity/weights/{tag}", row["sparsity"], epoch)
        self.writer.flush()

    def log_weights_distribution(self, named_params: NamedTensors, steps_completed: int) -> None:
        for name, param in named_params:
            self.writer.add_histogram(name.replace(".", "/"), param.detach().cpu(), steps_completed)
        self.writer.flush()

    def log_model_buffers(self, model: torch.nn.Module, buffer_names: Sequence[str], tag_prefix: str, epoch: int,
                          completed: int, total: int, freq: int) -> None:
        """Scalars ``<tag_prefix><module>/<buffer>[/<index>]`` at step ``epoch * total + completed``."""
        step = epoch * int(total) + completed if epoch > -1 else completed
        for buffer_name, rows in model_buffer_values(model, buffer_names).items():
            for module_name, values in rows:
                tag = f"{tag_prefix}{module_name}/{buffer_name}"
                for index, value in enumerate(values):
                    self.writer.add_scalar(tag if len(values) == 1 else f"{tag}/{index}", value, step)
        self.writer.flush()

    def log_graph(self, model: torch.nn.Module, dummy_input: Any) -> None:
        """Writes ``model``'s graph (captured with torch.fx on ``dummy_input``, see
        :mod:`distiller.data_loggers.tensorboard_graph`) for TensorBoard's Graphs tab.

        Raises:
            GraphCaptureError: the model cannot be traced or does not run on the input.
        """
        # Imported here, like SummaryWriter: tensorboard's protos load slowly and only this method needs them.
        from ..graph.summary_graph import SummaryGraph
        from .tensorboard_graph import graph_profile

        # SummaryWriter opens its FileWriter when constructed (typed Optional for after close())
        typing.cast(Any, self.writer.file_writer).add_graph(graph_profile(SummaryGraph(model, dummy_input)))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _CsvTable:
    """A CSV file that grows one row at a time; the header widens (file rewritten) when new keys appear."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fieldnames: list[str] = []
        self.rows: list[Mapping[str, Any]] = []

    def append(self, row: Mapping[str, Any]) -> None:
        self.rows.append(row)
        new_keys = [key for key in row if key not in self.fieldnames]
        if new_keys or len(self.rows) == 1:
            self.fieldnames += new_keys
            self._write(self.rows, mode="w", header=True)
        else:
            self._write([row], mode="a", header=False)

    def _write(self, rows: Sequence[Mapping[str, Any]], mode: str, header: bool) -> None:
        with open(self.path, mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fieldnames)
            if header:
                writer.writeheader()
            writer.writerows(rows)


class CsvLogger(DataLogger):
    """Appends statistics to CSV files in ``logdir``, one file per kind of record.

    ``log_training_progress`` writes ``<prefix>.csv`` (e.g. ``('Performance/Validation/', ...)`` goes to
    ``performance_validation.csv``; no prefix: ``training_progress.csv``) with columns ``epoch``,
    ``completed``, ``total`` and one per statistic. Weight sparsity goes to ``weights_sparsity.csv``,
    activation statistics to ``activations_<stat>.csv``, distributions to ``weights_distribution.csv``.
    File names get ``fname_prefix + '_'`` in front when ``fname_prefix`` is set.
    """

    def __init__(self, fname_prefix: str = "", logdir: str = "") -> None:
        self.fname_prefix, self.logdir = fname_prefix, logdir
        self._tables: dict[str, _CsvTable] = {}

    def get_fname(self, postfix: str) -> str:
        """The path of the CSV file for records of kind ``postfix``."""
        name = f"{self.fname_prefix}_{postfix}" if self.fname_prefix else postfix
        return os.path.join(self.logdir, name + ".csv")

    def _table(self, postfix: str) -> _CsvTable:
        if postfix not in self._tables:
            self._tables[postfix] = _CsvTable(self.get_fname(postfix))
        return self._tables[postfix]

    def log_training_progress(self, stats_dict: StatsDict, epoch: int, completed: int, total: int, freq: int) -> None:
        """A row ``epoch, completed, total, <statistics>``; a record of a whole pass (``total`` 1, e.g. an
        epoch's summary or a test) has no step columns: ``epoch, <statistics>``."""
        prefix, stats = _split_stats(stats_dict)
        postfix = prefix.strip("/").replace("/", "_").lower() or "training_progress"
        steps = {} if int(total) == 1 else {"completed": completed, "total": int(total)}
        self._table(postfix).append({"epoch": epoch, **steps, **stats})

    def log_activation_statistic(self, phase: str, stat_name: str, activation_stats: Mapping[str, Number],
                                 epoch: int) -> None:
        table = self._table(f"activations_{stat_name}")
        for layer, value in activation_stats.items():
            table.append({"epoch": epoch, "phase": phase, "layer": layer, stat_name: _number(value)})

    def log_weights_sparsity(self, model: torch.nn.Module, epoch: int) -> None:
        table = self._table("weights_sparsity")
        for row in weights_sparsity_rows(model):
            table.append({"epoch": epoch, **row})

    def log_weights_distribution(self, named_params: NamedTensors, steps_completed: int) -> None:
        table = self._table("weights_distribution")
        for row in _distribution_rows(named_params):
            table.append({"step": steps_completed, **row})

    def log_model_buffers(self, model: torch.nn.Module, buffer_names: Sequence[str], tag_prefix: str, epoch: int,
                          completed: int, total: int, freq: int) -> None:
        """One row per module and buffer in ``<buffer>.csv``: epoch, completed, total, layer, values."""
        for buffer_name, rows in model_buffer_values(model, buffer_names).items():
            for module_name, values in rows:
                self._table(buffer_name).append({"epoch": epoch, "completed": completed, "total": int(total),
                                                 "layer": module_name,
                                                 **{f"val_{i}": v for i, v in enumerate(values)}})


def _as_list(loggers: Loggers) -> list[DataLogger]:
    if isinstance(loggers, (list, tuple)):
        return list(loggers)
    return [typing.cast(DataLogger, loggers)]  # a single logger (duck-typed ones included)


def log_training_progress(stats_dict: StatsDict, params_dict: Optional[Mapping[str, torch.Tensor]], epoch: int,
                          steps_completed: int, total_steps: int, log_freq: int, loggers: Loggers) -> None:
    """Sends ``stats_dict`` (and, when given, the distribution of ``params_dict`` (name -> tensor)) to
    every logger in ``loggers``."""
    for logger in _as_list(loggers):
        logger.log_training_progress(stats_dict, epoch, steps_completed, total_steps, freq=log_freq)
        if params_dict is not None:
            logger.log_weights_distribution(params_dict.items(), steps_completed)


def log_weights_sparsity(model: torch.nn.Module, epoch: int, loggers: Loggers) -> None:
    """Sends the weight sparsity of ``model`` to every logger in ``loggers``."""
    for logger in _as_list(loggers):
        logger.log_weights_sparsity(model, epoch)


def log_activation_statistics(epoch: int, phase: str, loggers: Loggers,
                              collector: Optional[ActivationStatsCollector]) -> None:
    """Sends the values of an activation-statistics ``collector`` (with ``stat_name`` and ``value()``)
    to every logger in ``loggers``; does nothing when ``collector`` is None (no statistics collected)."""
    if collector is None:
        return
    for logger in _as_list(loggers):
        logger.log_activation_statistic(phase, collector.stat_name, collector.value(), epoch)


def log_model_buffers(model: torch.nn.Module, buffer_names: Sequence[str], tag_prefix: str, epoch: int,
                      steps_completed: int, total_steps: int, log_freq: int, loggers: Loggers = ()) -> None:
    """Sends the values of the buffers named ``buffer_names`` (e.g. ``['clip_val']`` of PACT layers) to
    every logger in ``loggers``; ``tag_prefix`` starts each TensorBoard tag / log line."""
    for logger in _as_list(loggers):
        logger.log_model_buffers(model, buffer_names, tag_prefix, epoch, steps_completed, total_steps, log_freq)
