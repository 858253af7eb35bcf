"""Activation statistics of a classifier run (Distiller's ``--activation-stats``, ``--activation-histograms``
and quantization-calibration statistics): which collectors each phase runs, and where their data goes."""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any, Optional

import torch
from torch import nn

from ..data_loggers import (ActivationStatsCollector, RecordsActivationStatsCollector, SummaryActivationStatsCollector,
                            collect_histograms, collect_quant_stats)
from ..errors import ArgumentError
from ..metrics import sparsity
from ..metrics.channels import activation_channels_apoz, activation_channels_l1, activation_channels_means
from .classifier_loop import evaluate
from .data_loaders import first_batches

__all__ = ["PHASES", "create_activation_stats_collectors", "save_collectors_data", "acts_quant_stats_collection",
           "acts_histogram_collection"]

msglogger = logging.getLogger(__name__)

#: The phases of a run whose activations can be collected.
PHASES = ("train", "valid", "test")
#: phase -> collector name -> collector.
PhaseCollectors = dict[str, dict[str, ActivationStatsCollector]]


def _percent_sparsity(tensor: torch.Tensor) -> float:
    return 100.0 * sparsity(tensor)


def create_activation_stats_collectors(model: nn.Module, *phases: str) -> PhaseCollectors:
    """Distiller's per-phase activation collectors: for each phase named in ``phases``, the sparsity (in
    percent) of the ReLU outputs (``sparsity_ofm``), their per-channel L1 norm, APoZ (Hu et al. 2016,
    "Network Trimming") and mean, and per-sample records of the convolutions' outputs (``records``); the
    other phases get no collectors.

    Raises:
        ArgumentError: a phase other than ``train``, ``valid`` or ``test``, or a model without ReLU or
            Conv2d modules.
    """
    unknown = [phase for phase in phases if phase not in PHASES]
    if unknown:
        raise ArgumentError(f"--activation-stats: unknown phase(s) {', '.join(map(repr, unknown))}; choose among "
                            f"{', '.join(PHASES)}", argument="activation_stats")

    def collectors() -> dict[str, ActivationStatsCollector]:
        return {"sparsity_ofm": SummaryActivationStatsCollector(model, "sparsity_ofm", _percent_sparsity),
                "l1_channels": SummaryActivationStatsCollector(model, "l1_channels", activation_channels_l1),
                "apoz_channels": SummaryActivationStatsCollector(model, "apoz_channels", activation_channels_apoz),
                "mean_channels": SummaryActivationStatsCollector(model, "mean_channels", activation_channels_means),
                "records": RecordsActivationStatsCollector(model, classes=[nn.Conv2d])}
    return {phase: collectors() if phase in phases else {} for phase in PHASES}


def save_collectors_data(collectors: Mapping[str, Optional[ActivationStatsCollector]],
                         directory: str) -> dict[str, str]:
    """Saves each collector's data as ``<directory>/<name>.xlsx``; returns name -> path."""
    os.makedirs(directory, exist_ok=True)
    return {name: collector.save(os.path.join(directory, name))  # type: ignore[attr-defined]
            for name, collector in collectors.items() if collector is not None}


def acts_quant_stats_collection(model: nn.Module, criterion: nn.Module, loggers: Any, args: argparse.Namespace,
                                test_loader: Optional[Iterable[Any]] = None, save_to_file: bool = False,
                                save_dir: Optional[str] = None) -> dict[str, Any]:
    """Distiller's calibration-statistics pass: the activation ranges of ``model`` (see
    :func:`distiller.data_loggers.collect_quant_stats`) over ``test_loader`` (default: the test set the
    command line describes, with ``--effective-test-size``); with ``save_to_file``, also written to
    ``save_dir/acts_quantization_stats.yaml``. Returns the statistics.

    Raises:
        ArgumentError: ``save_to_file`` without ``save_dir``.
    """
    if save_to_file and save_dir is None:
        raise ArgumentError("acts_quant_stats_collection(save_to_file=True) needs save_dir=<directory>")
    if test_loader is None:
        from .image_classifier import load_data
        test_loader = load_data(args, fixed_subset=True, load_train=False, load_val=False)
    msglogger.info("Collecting quantization calibration statistics")
    return collect_quant_stats(model, lambda m: evaluate(m, criterion, test_loader),  # type: ignore[arg-type]
                               save_dir=save_dir if save_to_file else None)


def acts_histogram_collection(model: nn.Module, criterion: nn.Module, test_loader: Iterable[Any], portion: float,
                              save_dir: str) -> dict[str, Any]:
    """Activation histograms (``--activation-histograms PORTION``) over the first ``portion`` of the test set,
    saved to ``save_dir/acts_histograms.pt`` (see :func:`distiller.data_loggers.collect_histograms`)."""
    batches = first_batches(test_loader, portion)
    msglogger.info("Collecting activation histograms on %d test batches (%.0f%% of the test set)", len(batches),
                   100 * portion)
    return collect_histograms(model, lambda m: evaluate(m, criterion, batches), save_dir=save_dir)
