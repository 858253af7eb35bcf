"""``collector_context`` / ``collectors_context``: run activation-statistics collectors for the duration of a
``with`` block."""
from __future__ import annotations

import contextlib
import inspect
from typing import Any, Iterator, Mapping, Optional, Sequence

from ..errors import ArgumentError

__all__ = ["collector_context", "collectors_context"]


@contextlib.contextmanager
def collector_context(collector: Any, modules_list: Optional[Sequence[str]] = None) -> Iterator[Any]:
    """Resets and starts ``collector`` on entry and stops it on exit (also when the block raises).

    Args:
        collector: an object with ``reset()``, ``start()`` and ``stop()`` (e.g.
            :class:`~distiller.data_loggers.QuantCalibrationStatsCollector`), or None (nothing is collected).
        modules_list: names of the modules to collect from, for collectors whose ``start`` takes them;
            :class:`~distiller.data_loggers.QuantCalibrationStatsCollector` takes them at construction
            (``modules_to_collect``).
    Yields:
        ``collector``.
    Raises:
        ArgumentError: ``modules_list`` given to a collector whose ``start()`` takes no module list.

    Example:
        >>> with collector_context(QuantCalibrationStatsCollector(model)) as collector:
        ...     evaluate(model)
        >>> stats = collector.value()
    """
    if collector is None:
        yield None
        return
    if modules_list is not None and not inspect.signature(collector.start).parameters:
        raise ArgumentError(f"{type(collector).__name__}.start() takes no module list; choose the modules when "
                            f"building the collector (e.g. modules_to_collect=...)")
    collector.reset()
    if modules_list is None:
        collector.start()
    else:
        collector.start(modules_list)
    try:
        yield collector
    finally:
        collector.stop()


@contextlib.contextmanager
def collectors_context(collectors_dict: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Runs every collector of ``collectors_dict`` (name -> collector, e.g. one phase's collectors) with
    :func:`collector_context` for the duration of the block: all are reset and started on entry and
    stopped on exit, also when the block raises. None values are skipped.

    Yields:
        ``collectors_dict``.
    Example:
        >>> collectors = {"sparsity": SummaryActivationStatsCollector(model, "sparsity", distiller.utils.sparsity)}
        >>> with collectors_context(collectors):
        ...     evaluate(model)
        >>> collectors["sparsity"].value()
    """
    with contextlib.ExitStack() as stack:
        for collector in collectors_dict.values():
            stack.enter_context(collector_context(collector))
        yield collectors_dict
