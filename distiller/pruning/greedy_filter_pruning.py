"""Greedy filter pruning: shrink, step by step, the channel group whose pruning costs the least accuracy per
MAC saved, physically (thinning), until the model's MACs reach a target share of the original's.

Each iteration proposes one move per prunable dependency group (the channels that must go together: a
convolution's filters, or a whole residual stream; see :mod:`distiller.pruning.greedy_candidates`): remove
``pruning_step`` of the group's channels, its L1-weakest filters. Every move is applied to a copy of the
model and evaluated; the move with the smallest top-1 drop per MAC saved is applied to the model, which is
then fine-tuned. This is the iterative layer-by-layer adaptation of Yang et al., "NetAdapt: Platform-Aware
Neural Network Adaptation for Mobile Applications" (ECCV 2018), with MACs as the resource and Distiller's
``greedy_filter_pruning`` interface.

Example:
    >>> test_fn = lambda model: test(val_loader, model, criterion)       # -> (top1, top5, loss)
    >>> train_fn = lambda model, epochs: ...                            # fine-tunes in place
    >>> model, steps = greedy_pruner(model, args, 0.5, 0.1, test_fn, train_fn,
    ...                              dummy_input=torch.randn(1, 3, 32, 32), save_dir=logdir)  # writes greedy.csv
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import os
from typing import Any, Callable, Optional, Sequence

import torch
from tqdm import tqdm

from ..errors import ArgumentError
from ..graph import DependencyGraph
from ..summaries.compute import model_macs, model_params
from ..thinning import ThinningRecipe
from ..thinning.remove import example_input
from ..thinning.surgery import apply_edits
from .greedy_candidates import GroupShrink, group_shrinks, minimum_recipe, thinned_copy, unprunable_error

msglogger = logging.getLogger(__name__)

__all__ = ["greedy_pruner", "add_greedy_pruner_args", "finetuning_epochs", "GreedyStep", "FINETUNING_POLICIES",
           "CSV_NAME"]

#: ``--greedy-finetuning-policy`` values (see :func:`finetuning_epochs`).
FINETUNING_POLICIES = ("constant", "linear-grow")
#: The file, in ``save_dir``, with one row per step.
CSV_NAME = "greedy.csv"


@dataclasses.dataclass(frozen=True)
class GreedyStep:
    """One step of :func:`greedy_pruner`: the group shrunk and the model after it (and its fine-tuning).

    Attributes:
        iteration: 1, 2, ...
        layers: the layers whose filters were removed (one group: several layers for a residual stream).
        channels_before, channels_after: the group's channel count.
        macs: the model's MACs per sample after the step; ``density``: ``macs`` over the original MACs.
        params: the model's parameter count after the step.
        candidate_top1: the step's top-1 before fine-tuning (what the search compared).
        finetune_epochs: epochs of fine-tuning after the step.
        top1, top5, loss: the scores after fine-tuning.
        recipe: the thinning applied (replayable with :func:`distiller.thinning.apply_thinning_recipe`).
    """
    iteration: int
    layers: tuple[str, ...]
    channels_before: int
    channels_after: int
    macs: int
    density: float
    params: int
    candidate_top1: float
    finetune_epochs: int
    top1: float
    top5: float
    loss: float
    recipe: ThinningRecipe = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class _Trial:
    """A move evaluated on a copy of the model."""
    shrink: GroupShrink
    macs: int
    params: int
    top1: float
    top5: float
    loss: float


def add_greedy_pruner_args(argparser: argparse.ArgumentParser, arch_choices: Optional[Sequence[str]] = None,
                           enable_pretrained: bool = False) -> argparse._ArgumentGroup:
    """Adds Distiller's greedy pruning flags: ``--greedy``, ``--greedy-ft-epochs`` (1),
    ``--greedy-target-density``, ``--greedy-pruning-step`` (0.10) and ``--greedy-finetuning-policy``
    (``constant``). ``arch_choices`` and ``enable_pretrained`` are accepted for compatibility and unused.

    Returns:
        the "Greedy Pruning" argument group.
    """
    del arch_choices, enable_pretrained
    # imported here: distiller.cli imports the quantization package, which must not load while pruning does
    from ..cli.common import fraction, non_negative_int

    group = argparser.add_argument_group("Greedy Pruning")
    group.add_argument("--greedy", action="store_true", help="greedy filter pruning")
    group.add_argument("--greedy-ft-epochs", type=non_negative_int, default=1,
                       help="number of epochs to fine-tune each discovered network (default: 1)")
    group.add_argument("--greedy-target-density", type=fraction(False, False), default=None,
                       help="target density of the network we are seeking: the share of its MACs to keep, in (0, 1)")
    group.add_argument("--greedy-pruning-step", type=fraction(False, False), default=0.10,
                       help="size of each pruning step, as a share of a channel group's filters in (0, 1) "
                            "(default: 0.10)")
    group.add_argument("--greedy-finetuning-policy", choices=FINETUNING_POLICIES, default="constant",
                       help="policy used for determining how long to fine-tune: constant (--greedy-ft-epochs "
                            "after every step) or linear-grow (growing with the share of MACs removed, up to "
                            "--greedy-ft-epochs at the target)")
    return group


def finetuning_epochs(policy: str, ft_epochs: int, density: float, target_density: float) -> int:
    """Epochs of fine-tuning after a step that left the model at ``density`` of its original MACs.

    ``'constant'``: ``ft_epochs``. ``'linear-grow'``: ``ft_epochs`` times the progress towards the target
    (``(1 - density) / (1 - target_density)``), rounded up and at most ``ft_epochs``: short fine-tuning
    while the network is still wide, longer as it shrinks. (Distiller's linear-grow scaled the share of the
    training set used instead.)
    """
    if policy == "constant":
        return ft_epochs
    progress = (1 - density) / (1 - target_density)
    return min(ft_epochs, math.ceil(round(ft_epochs * progress, 9)))


def _open_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ArgumentError(f"{name} must be a number in (0, 1), got {value!r}", argument=name)
    return float(value)


def _finetuning_settings(app_args: Any) -> tuple[int, str]:
    ft_epochs = getattr(app_args, "greedy_ft_epochs", 1)
    policy = getattr(app_args, "greedy_finetuning_policy", "constant")
    if isinstance(ft_epochs, bool) or not isinstance(ft_epochs, int) or ft_epochs < 0:
        raise ArgumentError(f"greedy_ft_epochs must be an integer >= 0, got {ft_epochs!r}",
                            argument="greedy_ft_epochs")
    if policy not in FINETUNING_POLICIES:
        raise ArgumentError(f"greedy_finetuning_policy must be one of {list(FINETUNING_POLICIES)}, got {policy!r}",
                            argument="greedy_finetuning_policy")
    return ft_epochs, policy


def _scores(test_fn: Callable[..., Sequence[float]], model: torch.nn.Module) -> tuple[float, float, float]:
    result = test_fn(model=model)
    if not isinstance(result, Sequence) or len(result) != 3:
        raise ArgumentError(f"test_fn(model=...) must return (top1, top5, loss), got {result!r}", argument="test_fn")
    top1, top5, loss = result
    return float(top1), float(top5), float(loss)


def _trial(model: torch.nn.Module, shrink: GroupShrink, inputs: Any,
           test_fn: Callable[..., Sequence[float]]) -> _Trial:
    candidate = thinned_copy(model, shrink.recipe)
    macs, params = model_macs(candidate, inputs), model_params(candidate)
    return _Trial(shrink, macs, params, *_scores(test_fn, candidate))


def _best(trials: list[_Trial], top1: float, loss: float, macs: int) -> Optional[_Trial]:
    """The trial losing the least top-1 per MAC saved (a gain counts as no loss); ties go to the smaller loss
    increase per MAC saved, then to the most MACs saved, then to the first group in graph order."""
    def cost(index: int) -> tuple[float, float, int, int]:
        trial = trials[index]
        saved = macs - trial.macs
        return max(0.0, top1 - trial.top1) / saved, max(0.0, trial.loss - loss) / saved, -saved, index
    useful = [i for i, trial in enumerate(trials) if trial.macs < macs]
    return trials[min(useful, key=cost)] if useful else None


def _check_reachable(deps: DependencyGraph, model: torch.nn.Module, inputs: Any, dense_macs: int,
                     target_density: float) -> None:
    recipe = minimum_recipe(deps)
    if not recipe:
        raise unprunable_error(deps, dense_macs, target_density * dense_macs)
    floor = model_macs(thinned_copy(model, recipe), inputs)
    if floor > target_density * dense_macs:
        lowest = math.ceil(floor / dense_macs * 1e4) / 1e4
        raise ArgumentError(f"target density {target_density:g} is unreachable: with every prunable channel group "
                            f"at its minimum the model keeps {floor:,} of its {dense_macs:,} MACs; choose a target "
                            f"density of at least {lowest:.4f}", argument="fraction_to_prune")


class _CsvWriter:
    """Appends one row per step to ``<save_dir>/greedy.csv`` (flushed, so an interrupted run keeps its rows)."""
    COLUMNS = [field.name for field in dataclasses.fields(GreedyStep) if field.name != "recipe"]

    def __init__(self, save_dir: Optional[str]) -> None:
        self.path: Optional[str] = None
        if save_dir is not None:
            os.makedirs(save_dir, exist_ok=True)
            self.path = os.path.join(save_dir, CSV_NAME)
            self._write(self.path, self.COLUMNS, "w")

    @staticmethod
    def _write(path: str, row: list[Any], mode: str) -> None:
        with open(path, mode, newline="") as f:
            csv.writer(f).writerow(row)

    def add(self, step: GreedyStep) -> None:
        if self.path is not None:
            values = {name: getattr(step, name) for name in self.COLUMNS}
            values["layers"] = " ".join(step.layers)
            self._write(self.path, list(values.values()), "a")


def greedy_pruner(pruned_model: torch.nn.Module, app_args: Any, fraction_to_prune: float, pruning_step: float,
                  test_fn: Callable[..., Sequence[float]], train_fn: Optional[Callable[..., Any]],
                  dummy_input: Any = None, save_dir: Optional[str] = None,
                  optimizer: Optional[torch.optim.Optimizer] = None, scheduler: Any = None,
                  on_step: Optional[Callable[[GreedyStep, torch.nn.Module], None]] = None
                  ) -> tuple[torch.nn.Module, list[GreedyStep]]:
    """Prunes filters greedily (see the module docstring) until the MACs are at most ``fraction_to_prune``
    of the model's MACs on entry.

    Args:
        pruned_model: the trained model, thinned in place (DataParallel wrappers are fine).
        app_args: Distiller's argparse namespace: ``greedy_ft_epochs`` (default 1),
            ``greedy_finetuning_policy`` (default ``'constant'``) and ``dataset`` (for zeros as example input
            when ``dummy_input`` is None) are read; None for the defaults.
        fraction_to_prune: the target density: the share of the MACs to keep, in (0, 1) (Distiller's name;
            its app passes ``--greedy-target-density``).
        pruning_step: the share of a group's filters one step removes (at least one), in (0, 1).
        test_fn: called as ``test_fn(model=m)``, returns ``(top1, top5, loss)``; it evaluates every candidate,
            so give it a validation subset that is quick to run.
        train_fn: called as ``train_fn(model=m, epochs=n)`` to fine-tune ``m`` in place after each step, or
            None for no fine-tuning.
        dummy_input: example input (a batch of one) for the graph and the MAC counts.
        save_dir: directory for ``greedy.csv`` (one row per step); None writes no file.
        optimizer: optional optimizer of ``pruned_model`` whose per-parameter state is sliced at each step.
        scheduler: optional ``CompressionScheduler``: each step's thinning is recorded in its model transforms
            (so its checkpoints reload the pruned shapes) and its masks are sliced.
        on_step: optional ``fn(step, model)`` called after each step (e.g. to save a checkpoint).
    Returns:
        ``(pruned_model, steps)``: the model and a :class:`GreedyStep` per step.
    Raises:
        ArgumentError: a fraction or step outside (0, 1), bad fine-tuning settings, a ``test_fn`` result that
            is not ``(top1, top5, loss)``, or a target below what the prunable groups can reach (the message
            gives the lowest reachable density).
        ThinningError: no example input, or no channel group can shrink (the message names the ops keeping
            the channels whole).
        GraphCaptureError: the model cannot be traced (the message names its forward and the reason).
    """
    target_density = _open_fraction(fraction_to_prune, "fraction_to_prune")
    step_size = _open_fraction(pruning_step, "pruning_step")
    ft_epochs, policy = _finetuning_settings(app_args)
    model = pruned_model
    inputs = example_input(model, dummy_input, getattr(app_args, "dataset", None))
    dense_macs = macs = model_macs(model, inputs)
    target_macs = target_density * dense_macs
    deps = DependencyGraph(model, inputs)
    _check_reachable(deps, model, inputs, dense_macs, target_density)
    top1, _, loss = _scores(test_fn, model)
    msglogger.info("Greedy filter pruning to %.1f%% of %s MACs in steps of %.0f%% of a group (top1 %.2f)",
                   100 * target_density, f"{dense_macs:,}", 100 * step_size, top1)
    writer = _CsvWriter(save_dir)
    steps: list[GreedyStep] = []
    while macs > target_macs:
        iteration = len(steps) + 1
        if iteration > 1:
            deps = DependencyGraph(model, inputs)
        shrinks = group_shrinks(deps, step_size)
        trials = [_trial(model, shrink, inputs, test_fn) for shrink in
                  tqdm(shrinks, desc=f"Greedy step {iteration}", unit="candidate", leave=False, disable=None)]
        best = _best(trials, top1, loss, macs)
        if best is None:
            raise unprunable_error(deps, macs, target_macs)
        step = _apply(model, best, iteration, dense_macs, target_density, ft_epochs, policy, test_fn, train_fn,
                      optimizer, scheduler)
        macs, top1, loss = step.macs, step.top1, step.loss
        steps.append(step)
        tuned = (f" ({step.candidate_top1:.2f} before {step.finetune_epochs} epoch(s) of fine-tuning)"
                 if step.finetune_epochs else "")
        msglogger.info("Greedy step %d: %s %d -> %d channels; MACs %s (%.1f%%), params %s; top1 %.2f%s", iteration,
                       "+".join(step.layers), step.channels_before, step.channels_after, f"{step.macs:,}",
                       100 * step.density, f"{step.params:,}", step.top1, tuned)
        writer.add(step)
        if on_step is not None:
            on_step(step, model)
    return model, steps


def _apply(model: torch.nn.Module, best: _Trial, iteration: int, dense_macs: int, target_density: float,
           ft_epochs: int, policy: str, test_fn: Callable[..., Sequence[float]],
           train_fn: Optional[Callable[..., Any]], optimizer: Optional[torch.optim.Optimizer],
           scheduler: Any) -> GreedyStep:
    """Thins ``model`` by the chosen move, fine-tunes it and measures it."""
    recipe = best.shrink.recipe
    apply_edits(model, recipe.modules, optimizer, [scheduler.zeros_mask_dict] if scheduler is not None else [])
    if scheduler is not None:
        record = recipe.to_record()
        scheduler.record_transform(record.pop("kind"), record)
    density = best.macs / dense_macs
    epochs = finetuning_epochs(policy, ft_epochs, density, target_density) if train_fn is not None else 0
    scores = (best.top1, best.top5, best.loss)
    if epochs:
        train_fn(model=model, epochs=epochs)  # type: ignore[misc]
        scores = _scores(test_fn, model)
    return GreedyStep(iteration, best.shrink.layers, best.shrink.channels_before, best.shrink.channels_after,
                      best.macs, density, best.params, best.top1, epochs, *scores, recipe=recipe)
