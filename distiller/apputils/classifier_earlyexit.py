"""Training and evaluating early-exit classifiers in the classifier app (Teerapittayanon et al., "BranchyNet:
Fast Inference via Early Exiting from Deep Neural Networks", ICPR 2016).

An early-exit network (``*_earlyexit``, see :mod:`distiller.models.early_exit`) returns a list of logits, one
per exit, the final classifier last. Training minimises the weighted sum of the exits' cross-entropies
(``--earlyexit_lossweights`` for the early exits, the rest for the final one); in evaluation each sample
leaves at the first exit whose softmax entropy is below that exit's ``--earlyexit_thresholds`` value, else
at the final exit, and costs the MACs computed up to that exit.
"""
from __future__ import annotations

import typing

import argparse
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ArgumentError
from ..models.early_exit import BranchPoint
from ..summaries.compute import model_performance_summary
from ..utils import model_device, model_is_parallel
from .classifier_reports import RunningScores

__all__ = ["EarlyExitLoss", "EarlyExitSetup", "check_earlyexit_flags", "earlyexit_setup", "exit_points",
           "earlyexit_stats", "exit_macs", "evaluate_earlyexit", "log_earlyexit", "softmax_entropy"]

msglogger = logging.getLogger(__name__)

#: Features that do not handle a model returning one output per exit.
_UNSUPPORTED = (("--kd-teacher", "kd_teacher"), ("--greedy", "greedy"), ("--thinnify", "thinnify"),
                ("--quantize-eval", "quantize_eval"), ("--export-onnx", "export_onnx"),
                ("--activation-histograms", "activation_histograms"))


def _given(args: argparse.Namespace, attribute: str) -> bool:
    value = getattr(args, attribute, None)
    return value is not None and value is not False and value != []


def check_earlyexit_flags(args: argparse.Namespace, arch: str) -> None:
    """Checks the early-exit flags against the architecture's name, before anything is built.

    Raises:
        ArgumentError: the flags with a network without exits; an early-exit network without
            ``--earlyexit_thresholds`` (or, when training, without ``--earlyexit_lossweights``), or with a
            feature that does not handle its list of outputs.
    """
    thresholds, weights = args.earlyexit_thresholds, args.earlyexit_lossweights
    if not arch.endswith("_earlyexit"):
        if thresholds is not None or weights is not None:
            raise ArgumentError(f"--earlyexit_thresholds/--earlyexit_lossweights apply to early-exit networks, not to "
                                f"--arch {arch}: use an *_earlyexit architecture (e.g. {arch}_earlyexit) or drop them")
        return
    if thresholds is None:
        raise ArgumentError(f"--arch {arch} has early exits: give each its softmax-entropy threshold with "
                            "--earlyexit_thresholds (e.g. --earlyexit_thresholds 0.8)")
    if weights is None and not args.evaluate:
        raise ArgumentError(f"--arch {arch} has early exits: give each its training loss weight with "
                            "--earlyexit_lossweights (e.g. --earlyexit_lossweights 0.3)")
    for flag, attribute in _UNSUPPORTED:
        if _given(args, attribute):
            raise ArgumentError(f"{flag} does not handle early-exit networks (--arch {arch}) yet; drop it or use "
                                f"{arch[:-len('_earlyexit')]}")


def exit_points(model: nn.Module) -> list[str]:
    """The names of ``model``'s branch points, in the order its outputs list their exits."""
    network = typing.cast(nn.Module, model.module) if model_is_parallel(model) else model
    return [name for name, module in network.named_modules() if isinstance(module, BranchPoint)]


def exit_macs(model: nn.Module, dummy_input: torch.Tensor) -> list[int]:
    """The MACs per sample spent by a sample that leaves at each exit: everything computed before the exit's
    classifier ends (earlier exits included, as they decide that the sample goes on); the final exit costs
    the whole network."""
    summary = model_performance_summary(model, dummy_input)
    cumulative = summary["MACs"].cumsum().tolist()
    costs = []
    for point in exit_points(model):
        rows = [i for i, name in enumerate(summary["Name"]) if name.startswith(f"{point}.branch_net")]
        costs.append(int(cumulative[rows[-1]]))
    return costs + [int(cumulative[-1])]


class EarlyExitLoss(nn.Module):
    """The weighted sum of the exits' cross-entropies: ``loss_weights[i]`` for early exit ``i``, one minus
    their sum for the final exit.

    Args:
        loss_weights: one weight per early exit, each >= 0, summing to less than 1.
    """

    def __init__(self, loss_weights: Sequence[float]) -> None:
        super().__init__()
        self.weights = [*loss_weights, 1.0 - sum(loss_weights)]

    def forward(self, outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        return sum((w * F.cross_entropy(out, target) for w, out in zip(self.weights, outputs)),
                   torch.zeros((), device=target.device))


@dataclass(frozen=True)
class EarlyExitSetup:
    """The run's exits: their names (the final one ``'final'``), entropy thresholds and MACs per sample."""
    names: list[str]
    thresholds: list[float]
    macs: list[int]


def earlyexit_setup(args: argparse.Namespace, model: nn.Module, dummy_input: torch.Tensor) -> Optional[EarlyExitSetup]:
    """Checks the early-exit flags against ``model``'s exits; None for a network without exits.

    Raises:
        ArgumentError: a threshold or loss weight per early exit is not given, or the weights are negative or
            sum to 1 or more, or a threshold is negative.
    """
    points = exit_points(model)
    if not points:
        return None
    thresholds, weights = args.earlyexit_thresholds, args.earlyexit_lossweights
    for flag, values in (("--earlyexit_thresholds", thresholds), ("--earlyexit_lossweights", weights)):
        if values is not None and len(values) != len(points):
            raise ArgumentError(f"{flag}: {len(values)} value(s) for the {len(points)} early exit(s) of the network "
                                f"(at {', '.join(points)}); give one per early exit, the final one excluded")
        if values is not None and min(values) < 0:
            raise ArgumentError(f"{flag}: {min(values)} is negative; each value must be >= 0")
    if weights is not None and sum(weights) >= 1:
        raise ArgumentError(f"--earlyexit_lossweights sum to {sum(weights):g}: the final exit gets 1 minus their sum, "
                            "so they must sum to less than 1")
    return EarlyExitSetup(points + ["final"], list(thresholds), exit_macs(model, dummy_input))


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The entropy (in nats) of each row's softmax: ``-sum(p * log p)``."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def evaluate_earlyexit(model: nn.Module, criterion: nn.Module, loader: Iterable[Any],
                       setup: EarlyExitSetup) -> dict[str, Any]:
    """Evaluates an early-exit ``model``: each sample leaves at the first exit whose softmax entropy is below
    its threshold, else at the final exit.

    Returns:
        ``{'Loss', 'Top1', 'Top5'}`` of the exits taken (Loss: ``criterion`` over all exits), ``'avg_macs'``
        (MACs per sample with early exiting), ``'macs_saved'`` (its share below the full network's) and
        ``'exits'``: per exit its ``name``, ``fraction`` of the samples taken, ``top1`` on those (None when
        none), ``top1_all`` on every sample, and ``macs``.
    """
    model.eval()
    device = model_device(model)
    scores = RunningScores()
    count = len(setup.names)
    taken, correct, correct_all = (torch.zeros(count, dtype=torch.long, device=device) for _ in range(3))
    thresholds = torch.tensor(setup.thresholds + [float("inf")], device=device)
    with torch.no_grad():
        for inputs, target in loader:
            inputs, target = inputs.to(device, non_blocking=True), target.to(device, non_blocking=True)
            outputs = model(inputs)
            stacked = torch.stack(list(outputs))  # exits x batch x classes
            hits = stacked.argmax(dim=2).eq(target)
            below = torch.stack([softmax_entropy(logits) for logits in outputs]) < thresholds.unsqueeze(1)
            chosen = below.int().argmax(dim=0)  # the first exit below its threshold (the final one always is)
            taken += torch.bincount(chosen, minlength=count)
            right_at_exit = hits.gather(0, chosen.unsqueeze(0))[0]
            correct += torch.bincount(chosen[right_at_exit], minlength=count)
            correct_all += hits.sum(dim=1)
            scores.update(stacked[chosen, torch.arange(target.numel(), device=device)], target,
                          criterion(outputs, target))
    samples = max(int(taken.sum()), 1)
    exits: list[dict[str, Any]] = [
        {"name": name, "fraction": int(n) / samples, "top1": 100.0 * int(c) / int(n) if n else None,
         "top1_all": 100.0 * int(c_all) / samples, "macs": macs}
        for name, n, c, c_all, macs in zip(setup.names, taken, correct, correct_all, setup.macs)]
    avg_macs = sum(e["fraction"] * e["macs"] for e in exits)
    return {**scores.values(), "exits": exits, "avg_macs": avg_macs, "macs_saved": 1.0 - avg_macs / setup.macs[-1]}


def log_earlyexit(phase: str, results: dict[str, Any]) -> None:
    """One console line per exit and one with the average MACs."""
    for e in results["exits"]:
        top1 = "-" if e["top1"] is None else f"{e['top1']:.2f}"
        msglogger.info("%s exit %s: %.2f%% of the samples, top1 %s (all samples: %.2f), %d MACs", phase, e["name"],
                       100.0 * e["fraction"], top1, e["top1_all"], e["macs"])
    msglogger.info("%s with early exits: top1 %.2f, %.0f MACs per sample on average (%.1f%% saved)", phase,
                   results["Top1"], results["avg_macs"], 100.0 * results["macs_saved"])


def earlyexit_stats(phase: str, results: dict[str, Any]) -> tuple[str, OrderedDict[str, float]]:
    """The results of :func:`evaluate_earlyexit` as a loggers' record ``('EarlyExit/<phase>/', statistics)``:
    per exit the percentage of samples taking it and their top-1 (NaN when none did), then the average MACs
    per sample and the percentage saved (TensorBoard scalars; ``earlyexit_<phase>.csv`` rows)."""
    stats: OrderedDict[str, float] = OrderedDict()
    for e in results["exits"]:
        stats[f"{e['name']}_taken_pct"] = 100.0 * e["fraction"]
        stats[f"{e['name']}_top1"] = float("nan") if e["top1"] is None else e["top1"]
    stats["avg_macs"] = results["avg_macs"]
    stats["macs_saved_pct"] = 100.0 * results["macs_saved"]
    return f"EarlyExit/{phase}/", stats
