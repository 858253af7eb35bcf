"""Activation statistics gathered with forward hooks while the model runs (Distiller's collectors).

:class:`SummaryActivationStatsCollector` reduces each batch of a module's activations to one statistic
(a number or one value per channel) and averages it over all samples seen, weighting each batch by its
size. :class:`RecordsActivationStatsCollector` keeps per-sample records (min, max, mean, std, L2 norm).
Both hook the leaf modules of the given classes, keep their data in the collector (nothing is stored on
the model) and save it as an Excel workbook or a CSV file (in a distributed run, after
:meth:`~ActivationStatsCollector.combine_processes` on every process, rank 0's files describe every shard)::

    collectors = {"sparsity_ofm": SummaryActivationStatsCollector(
                      model, "sparsity_ofm", lambda t: 100 * distiller.utils.sparsity(t)),
                  "apoz_channels": SummaryActivationStatsCollector(
                      model, "apoz_channels", distiller.utils.activation_channels_apoz),
                  "records": RecordsActivationStatsCollector(model, classes=[torch.nn.Conv2d])}
    with collectors_context(collectors):
        evaluate(model, loader)
    for name, collector in collectors.items():
        collector.save(os.path.join(run_dir, name))     # -> run_dir/<name>.xlsx
"""
from __future__ import annotations

import abc
import enum
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional, Union

import pandas as pd
import torch

from ..collectives import all_reduce_, gather_objects, is_distributed
from ..errors import ArgumentError, MissingDependencyError
from ..pyutils import size2str
from ..utils import match_names
from .collector import leaf_modules

__all__ = ["CollectorDirection", "ActivationStatsCollector", "SummaryActivationStatsCollector",
           "RecordsActivationStatsCollector"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
#: The default module types of Distiller's collectors: the activation functions.
ACTIVATION_CLASSES = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.LeakyReLU)
#: Excel's limit on the length of a sheet name, and the characters a sheet name may not contain.
_SHEET_NAME_MAX = 31
_SHEET_NAME_FORBIDDEN = str.maketrans({c: "_" for c in "[]:*?/\\"})


class CollectorDirection(enum.Enum):
    """Which activations a collector reads: a module's output (``OUT``, alias ``OFM``) or its inputs
    (``IN``, aliases ``IFM``, ``IFMS``)."""

    OUT = 0
    OFM = 0
    IN = 1
    IFM = 1
    IFMS = 1


class ActivationStatsCollector(abc.ABC):
    """Base of the hook-based collectors: selects the modules, installs and removes the hooks.

    Subclasses implement ``_hooks`` (install the hooks of one module), ``_clear`` (forget the data) and
    ``value``. ``start()``/``stop()`` install/remove the hooks; ``reset()`` forgets the data gathered so far.

    Args:
        model: the model; its module names are the keys of ``value()``.
        stat_name: the statistic's name (loggers use it as a tag, ``save`` as a sheet name).
        classes: module types to hook (None: every leaf module).
    Raises:
        ArgumentError: no module of ``model`` is an instance of ``classes``.
    """

    def __init__(self, model: torch.nn.Module, stat_name: str,
                 classes: Optional[Iterable[type[torch.nn.Module]]]) -> None:
        if not isinstance(stat_name, str) or not stat_name:
            raise ArgumentError(f"stat_name must be a non-empty string, got {stat_name!r}", argument="stat_name")
        self.model = model
        self.stat_name = stat_name
        self._modules = leaf_modules(model, classes)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._combined = False

    def start(self, modules_list: Optional[Sequence[str]] = None) -> ActivationStatsCollector:
        """Installs the hooks (again, if already installed).

        Args:
            modules_list: names or regular expressions restricting collection to some of the modules.
        Raises:
            UnmatchedNameError: a name in ``modules_list`` matches none of the collected modules.
        """
        self.stop()
        modules = self._modules
        if modules_list is not None:
            names = {n for hits in match_names(modules_list, [n for n, _ in modules], kind="module").values()
                     for n in hits}
            modules = [(n, m) for n, m in modules if n in names]
        for name, module in modules:
            self._handles.extend(self._hooks(name, module))
        return self

    def stop(self) -> None:
        """Removes the hooks; the data gathered so far is kept."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def remove_all_hooks(self) -> None:
        """Removes the hooks (Distiller's name for :meth:`stop`)."""
        self.stop()

    def reset(self) -> ActivationStatsCollector:
        """Forgets the data gathered so far (the hooks stay as they are)."""
        self._clear()
        self._combined = False
        return self

    def combine_processes(self) -> None:
        """Combines what every process of the initialized process group collected since the last reset, each on
        its shard of the data, so that every process's :meth:`value` (and file) describes all the shards, as
        one process's would after seeing all the data; nothing outside a process group. Call it on every
        process once the data has run.

        Raises:
            NotImplementedError: the collector does not know how to combine its data.
            RuntimeError: the data was already combined since the last reset (it would count twice).
        """
        if not is_distributed():
            return
        if self._combined:
            raise RuntimeError(f"{type(self).__name__} '{self.stat_name}': combine_processes ran already since the "
                               f"last reset")
        self._combine()
        self._combined = True

    def _combine(self) -> None:
        """Replaces this process's data by that of every process (see :meth:`combine_processes`)."""
        raise NotImplementedError(f"{type(self).__name__} does not combine the data of several processes")

    @abc.abstractmethod
    def _hooks(self, name: str, module: torch.nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        """Installs the hooks of one module and returns their handles."""

    @abc.abstractmethod
    def _clear(self) -> None:
        """Forgets the data gathered so far."""

    @abc.abstractmethod
    def value(self) -> OrderedDict[str, Any]:
        """module name -> the collected data, for the modules that ran."""


class _WeightedMean:
    """Mean of values (numbers or tensors) each weighted by the number of samples it summarises."""

    def __init__(self) -> None:
        self.total: Any = 0.0
        self.count = 0

    def add(self, value: Any, count: int) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().to(torch.float64)
        self.total = self.total + value * count
        self.count += count

    @property
    def mean(self) -> Any:
        mean = self.total / self.count
        if isinstance(mean, torch.Tensor):
            return mean.cpu().tolist()
        return mean.tolist() if hasattr(mean, "tolist") else float(mean)


class SummaryActivationStatsCollector(ActivationStatsCollector):
    """Averages one summary statistic of each hooked module's activations over all samples seen.

    Each batch is reduced by ``summary_fn`` to a number or a tensor (e.g. one value per channel) and
    weighted by its batch size, so the result is the mean over samples however the batches were sized.

    Args:
        model: the model.
        stat_name: the statistic's name (e.g. ``'apoz_channels'``).
        summary_fn: ``fn(activation) -> number or tensor``, e.g. :func:`distiller.utils.sparsity`,
            :func:`distiller.utils.activation_channels_apoz`, ``activation_channels_l1``, ``..._means``.
        classes: module types to hook (default: ReLU, ReLU6, LeakyReLU).
        collector_direction: summarise the module's output (``OUT``) or inputs (``IN``); a name works too.
        inputs_consolidate_func: with ``IN``, turns the tuple of tensor inputs into one tensor.
    Raises:
        ArgumentError: ``summary_fn`` is not callable, ``collector_direction`` is unknown, or no module
            is an instance of ``classes``.
    Example:
        >>> apoz = SummaryActivationStatsCollector(model, "apoz_channels", distiller.utils.activation_channels_apoz)
        >>> with collector_context(apoz):
        ...     evaluate(model, loader)
        >>> apoz.value()["relu1"]          # one APoZ (0-100) per channel
    """

    def __init__(self, model: torch.nn.Module, stat_name: str, summary_fn: Callable[[torch.Tensor], Any],
                 classes: Iterable[type[torch.nn.Module]] = ACTIVATION_CLASSES,
                 collector_direction: Union[CollectorDirection, str] = CollectorDirection.OUT,
                 inputs_consolidate_func: Callable[[list[torch.Tensor]], torch.Tensor] = torch.cat) -> None:
        if not callable(summary_fn):
            raise ArgumentError(f"summary_fn of collector '{stat_name}' must be callable, got "
                                f"{type(summary_fn).__name__}", argument="summary_fn")
        super().__init__(model, stat_name, classes)
        self.summary_fn = summary_fn
        self.collector_direction = _direction(collector_direction)
        self.inputs_consolidate_func = inputs_consolidate_func
        self._means: OrderedDict[str, _WeightedMean] = OrderedDict()

    def _hooks(self, name: str, module: torch.nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        if self.collector_direction is CollectorDirection.IN:
            # before the module runs: an in-place module would otherwise overwrite its input
            def input_hook(module: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
                tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
                if tensors:
                    self._add(name, self.inputs_consolidate_func(tensors))
            return [module.register_forward_pre_hook(input_hook)]

        def output_hook(module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if isinstance(output, torch.Tensor):
                self._add(name, output)
        return [module.register_forward_hook(output_hook)]

    def _add(self, name: str, activation: torch.Tensor) -> None:
        activation = activation.detach()
        samples = activation.size(0) if activation.dim() else 1
        self._means.setdefault(name, _WeightedMean()).add(self.summary_fn(activation), samples)

    def _clear(self) -> None:
        self._means = OrderedDict()

    def _combine(self) -> None:
        """All-reduces the weighted sums and sample counts (one message each): the statistic of all the samples
        of every shard. Exact for a ``summary_fn`` that is a mean over the batch's samples (Distiller's
        sparsity, channel L1, APoZ and mean all are), up to float rounding; other summaries are averaged as
        over the processes' smaller batches."""
        layouts: dict[str, Optional[tuple[int, ...]]] = {}
        for seen in gather_objects({name: _layout(mean.total) for name, mean in self._means.items()}):
            for name, layout in seen.items():
                layouts.setdefault(name, layout)
        names = [name for name, _ in self._modules if name in layouts]
        means = [self._means.setdefault(name, _WeightedMean()) for name in names]
        sizes = [math.prod(layouts[name] or ()) for name in names]
        totals = torch.cat([torch.as_tensor(mean.total, dtype=torch.float64).reshape(-1) if mean.count
                            else torch.zeros(size, dtype=torch.float64) for mean, size in zip(means, sizes)]
                           or [torch.zeros(0, dtype=torch.float64)])
        counts = torch.tensor([mean.count for mean in means], dtype=torch.int64)
        all_reduce_([totals, counts])
        for name, mean, total, count in zip(names, means, totals.split(sizes), counts.tolist()):
            layout = layouts[name]
            mean.total, mean.count = (float(total) if layout is None else total.reshape(layout)), count

    def value(self) -> OrderedDict[str, Any]:
        """module name -> the sample-weighted mean of the statistic (a float, or a list per channel)."""
        order = [n for n, _ in self._modules if n in self._means]
        return OrderedDict((name, self._means[name].mean) for name in order)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per module: a column named ``stat_name`` for a number, one column per channel else."""
        values = self.value()
        if all(not isinstance(v, list) for v in values.values()):
            return pd.DataFrame({self.stat_name: list(values.values())}, index=pd.Index(list(values), name="module"))
        # Modules have different channel counts: one Series per module, padded with NaN by concatenation.
        frame = pd.concat([pd.Series(v if isinstance(v, list) else [v], name=name) for name, v in values.items()],
                          axis=1).T
        frame.index.name = "module"
        return frame

    def save(self, fname: PathLike) -> str:
        """Writes :meth:`to_dataframe` to ``fname``: CSV if it ends in ``.csv``, else an Excel workbook
        (``.xlsx`` is appended when missing) with one sheet named after the statistic. Returns the path."""
        path = _output_path(fname)
        if path.endswith(".csv"):
            self.to_dataframe().to_csv(path)
        else:
            with _excel_writer(path) as writer:
                self.to_dataframe().to_excel(writer, sheet_name=_sheet_names([self.stat_name])[0])
        return path


class RecordsActivationStatsCollector(ActivationStatsCollector):
    """Records, for every sample, the min, max, mean, std and L2 norm of each hooked module's output.

    The records stay on the activations' device until :meth:`value` (no synchronisation per batch).

    Args:
        model: the model.
        classes: module types to hook (default: ReLU, ReLU6, LeakyReLU).
    Example:
        >>> records = RecordsActivationStatsCollector(model, classes=[torch.nn.Conv2d])
        >>> with collector_context(records):
        ...     evaluate(model, loader)
        >>> records.save(os.path.join(run_dir, "records"))   # one sheet per module
    """

    #: The per-sample statistics, in the order of the records and columns.
    RECORDS = ("min", "max", "mean", "std", "l2")

    def __init__(self, model: torch.nn.Module,
                 classes: Iterable[type[torch.nn.Module]] = ACTIVATION_CLASSES) -> None:
        super().__init__(model, "statistics_records", classes)
        self._records: OrderedDict[str, list[torch.Tensor]] = OrderedDict()
        self._shapes: dict[str, tuple[int, ...]] = {}  # of the last batch

    def _hooks(self, name: str, module: torch.nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        def output_hook(module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.numel():
                self._records.setdefault(name, []).append(_per_sample_records(output))
                self._shapes[name] = tuple(output.shape)
        return [module.register_forward_hook(output_hook)]

    def _clear(self) -> None:
        self._records = OrderedDict()
        self._shapes = {}

    def _combine(self) -> None:
        """Gathers every process's records (20 bytes per sample and module, sent to every process) and puts
        them in the one-process order of the samples: each process's ``k``-th batch must hold every
        ``world_size``-th sample of the ``k``-th global batch from its rank on, as sharded loaders
        (:class:`torch.utils.data.distributed.DistributedSampler`, the applications' sharded samplers) split
        them."""
        gathered = gather_objects({name: ([batch.cpu() for batch in records], self._shapes[name])
                                   for name, records in self._records.items()})
        for name, _ in self._modules:
            per_rank = [seen[name][0] if name in seen else [] for seen in gathered]
            if not any(per_rank):
                continue
            batches = []
            for k in range(max(len(records) for records in per_rank)):
                parts = [(rank, records[k]) for rank, records in enumerate(per_rank) if k < len(records)]
                merged = torch.empty(len(self.RECORDS), sum(part.size(1) for _, part in parts))
                for rank, part in parts:
                    merged[:, rank::len(gathered)] = part
                batches.append(merged)
            self._records[name] = batches
            shape = next(seen[name][1] for seen in gathered if name in seen)
            self._shapes[name] = (batches[-1].size(1), *shape[1:]) if len(shape) > 1 else shape

    def value(self) -> OrderedDict[str, OrderedDict[str, Any]]:
        """module name -> ``{'min': [...], 'max': [...], 'mean': [...], 'std': [...], 'l2': [...], 'shape':
        '(N, C, H, W)'}``: one value per sample in each list, the shape of the last batch."""
        result: OrderedDict[str, OrderedDict[str, Any]] = OrderedDict()
        for name, _ in self._modules:
            if name not in self._records:
                continue
            columns = torch.cat(self._records[name], dim=1).cpu().tolist()
            result[name] = OrderedDict(zip(self.RECORDS, columns))
            result[name]["shape"] = size2str(self._shapes[name])
        return result

    def to_dataframe(self) -> pd.DataFrame:
        """One row per module and sample: ``module``, ``min``, ``max``, ``mean``, ``std``, ``l2``, ``shape``."""
        frames = [_records_frame(records).assign(module=name) for name, records in self.value().items()]
        columns = ["module", *self.RECORDS, "shape"]
        return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)

    def save(self, fname: PathLike) -> str:
        """Writes the records to ``fname``: CSV (:meth:`to_dataframe`) if it ends in ``.csv``, else an Excel
        workbook (``.xlsx`` appended when missing) with one sheet per module, named after the module (the
        last 31 characters of long names). Returns the path."""
        path = _output_path(fname)
        if path.endswith(".csv"):
            self.to_dataframe().to_csv(path, index=False)
            return path
        records = self.value()
        with _excel_writer(path) as writer:
            if not records:
                pd.DataFrame(columns=[*self.RECORDS, "shape"]).to_excel(writer, sheet_name=self.stat_name)
            for sheet, module_records in zip(_sheet_names(list(records)), records.values()):
                _records_frame(module_records).to_excel(writer, sheet_name=sheet, index_label="sample")
        return path


def _direction(direction: Union[CollectorDirection, str]) -> CollectorDirection:
    if isinstance(direction, CollectorDirection):
        return direction
    if isinstance(direction, str) and direction.upper() in CollectorDirection.__members__:
        return CollectorDirection[direction.upper()]
    raise ArgumentError(f"collector_direction must be one of {list(CollectorDirection.__members__)}, got "
                        f"{direction!r}", argument="collector_direction")


def _layout(total: Any) -> Optional[tuple[int, ...]]:
    """None for a number, else the shape of the (tensor or array) total."""
    return None if isinstance(total, (int, float)) else tuple(torch.as_tensor(total).shape)


def _per_sample_records(output: torch.Tensor) -> torch.Tensor:
    """``[len(RECORDS), samples]``: min, max, mean, std, L2 norm of each sample of ``output``."""
    flat = output.detach().float()
    flat = flat.reshape(flat.size(0), -1) if flat.dim() > 1 else flat.reshape(1, -1)
    # the std of a single value is undefined (torch gives NaN); a constant has none, as in Distiller
    std = flat.std(dim=1) if flat.size(1) > 1 else torch.zeros_like(flat[:, 0])
    low, high = torch.aminmax(flat, dim=1)
    return torch.stack([low, high, flat.mean(dim=1), std, torch.linalg.vector_norm(flat, dim=1)])


def _records_frame(records: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame({k: records[k] for k in RecordsActivationStatsCollector.RECORDS})
    return frame.assign(shape=records["shape"])


def _output_path(fname: PathLike) -> str:
    """``fname`` as a string, ``.xlsx`` appended unless it ends in ``.xlsx`` or ``.csv``; its directory
    is created."""
    path = os.fspath(fname)
    if not path.endswith((".xlsx", ".csv")):
        path += ".xlsx"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def _sheet_names(names: Sequence[str]) -> list[str]:
    """Valid, distinct Excel sheet names for ``names``: forbidden characters replaced, long names cut to
    their last 31 characters (the end of a module name tells modules apart), clashes numbered."""
    used: set[str] = set()
    sheets = []
    for name in names:
        base = name.translate(_SHEET_NAME_FORBIDDEN) or "sheet"
        sheet, number = base[-_SHEET_NAME_MAX:], 1
        while sheet.lower() in used:
            suffix = f"~{number}"
            sheet, number = base[-(_SHEET_NAME_MAX - len(suffix)):] + suffix, number + 1
        used.add(sheet.lower())
        sheets.append(sheet)
    return sheets


def _excel_writer(path: str) -> pd.ExcelWriter:
    try:
        return pd.ExcelWriter(path, engine="openpyxl")
    except ImportError as err:
        raise MissingDependencyError(f"writing '{path}' needs openpyxl: pip install openpyxl "
                                     f"(or save to a .csv file)") from err
