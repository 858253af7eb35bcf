"""AMC's environment: an episode walks the prunable channel groups of a model, one pruning decision each.

He et al., "AMC: AutoML for Model Compression and Acceleration on Mobile Devices" (ECCV 2018). Each step
is one dependency group of :class:`~distiller.graph.DependencyGraph` (a convolution's filters, or a whole
residual stream with every layer writing to it): the action is the share of the group's channels to remove,
its L1-weakest filters (ranked as :func:`distiller.thinning.prune_and_thin` ranks them). With a budget
(``target_density`` of the MACs, or of any cost such as a latency model), each action is clipped so that the
budget stays reachable when every later group is pruned as far as allowed (the paper's resource-constrained
action space), so the last step always lands on the target. After the last step the model is thinned (a
copy; the model is unchanged), optionally recalibrated, evaluated, and the reward computed.

The API follows gymnasium's (``reset() -> (observation, info)``, ``step(action) -> (observation, reward,
terminated, truncated, info)``) without depending on it.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
from typing import Any, Callable, Optional, Sequence

import torch

from ..errors import ArgumentError, first_few
from ..graph import DependencyGraph, DependencyGroup
from ..pruning.greedy_candidates import thinned_copy
from ..thinning import ThinningError, ThinningRecipe
from ..thinning.plan import weight_importance
from .costs import LayerCosts
from .rewards import RewardFn, amc_mac_constrained_reward_fn

msglogger = logging.getLogger(__name__)

__all__ = ["AMCEnvironment", "EpisodeResult", "PruningStep", "STATE_FEATURES"]

#: The names of the observation's entries (each scaled to [0, 1] over the steps; MACs by the dense total).
STATE_FEATURES = ("index", "residual", "in_channels", "channels", "kernel", "stride", "spatial", "macs",
                  "reduced", "rest", "previous_action")

#: ``fn(model) -> (top1, top5, loss)``.
EvaluateFn = Callable[[torch.nn.Module], Sequence[float]]


@dataclasses.dataclass(frozen=True, eq=False)
class PruningStep:
    """One decision of an episode: a dependency group and how far it may shrink.

    Attributes:
        layers: the layers producing the group's channels (their filters go).
        channels: the group's channel ids.
        order: the removable channel ids, weakest first.
        max_remove: how many of ``order`` an action may remove (the action range and layout constraints).
        features: the static part of the step's state (see :data:`STATE_FEATURES`), unscaled.
    """
    layers: tuple[str, ...]
    channels: torch.Tensor
    order: torch.Tensor
    max_remove: int
    features: tuple[float, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class EpisodeResult:
    """The network an episode produced.

    Attributes:
        actions: the share of each group's channels removed (after clipping), in step order.
        top1, top5, loss: its validation scores.
        macs: its MACs per sample; ``density``: over the dense model's.
        cost: its budgeted cost (MACs, or what the environment's ``cost_fn`` measures).
        reward: the reward function's value.
        recipe: the thinning that produces it from the dense model.
        model: the thinned network.
    """
    actions: tuple[float, ...]
    top1: float
    top5: float
    loss: float
    macs: float
    density: float
    cost: float
    reward: float
    recipe: ThinningRecipe
    model: torch.nn.Module


def _producers(deps: DependencyGraph, group: DependencyGroup) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for name, attr in group.members if deps.role(name, attr) == "out"))


def _layer_features(deps: DependencyGraph, layer: str) -> tuple[float, float, float, float]:
    """(input channels, kernel area, stride, input spatial size) of the producing layer ``layer``."""
    module = deps.module(layer)
    kernel = math.prod(getattr(module, "kernel_size", (1,)))
    stride = getattr(module, "stride", (1,))[0]
    in_channels = getattr(module, "in_channels", getattr(module, "in_features", 0))
    shape = deps.graph.input_shape(deps.graph.module_ops(layer)[0]) or ()
    return float(in_channels), float(kernel), float(stride), float(math.prod(shape[2:]))


class AMCEnvironment:
    """The pruning environment (see the module docstring).

    Args:
        model: the trained model (unchanged: every episode thins a copy).
        example_input: a tensor (or tuple) of inputs, a batch of one, for the graph.
        evaluate_fn: ``fn(model) -> (top1, top5, loss)`` on a validation subset.
        reward_fn: ``fn(env, top1, top5, vloss, total_macs) -> reward`` (see :mod:`distiller.amc.rewards`).
        target_density: the share of the budgeted cost to keep, in (0, 1), or None for no budget (the
            accuracy-guaranteed protocol: actions only bounded by ``action_range``).
        cost_fn: ``fn(keep) -> cost`` of the network keeping the channels ``keep`` (bool per channel id of
            :attr:`deps`), monotone in ``keep``; None budgets the MACs. Build it after the environment with
            :attr:`deps` (e.g. :class:`distiller.amc.latency.LatencyModel`) and pass it to :meth:`set_budget`.
        action_range: ``(min, max)`` share of a group's channels an action removes.
        calibrate_fn: optional ``fn(model)`` run on each thinned network before evaluation (e.g. BatchNorm
            statistics re-estimation on a few training batches).
    Raises:
        ArgumentError: a bad ``target_density`` or ``action_range``, or a target the groups cannot reach
            (the message gives the lowest reachable density).
        ThinningError: no channel group of the model can shrink (the message names the ops keeping them).
        GraphCaptureError: the model cannot be traced (named by the graph capture).
    """

    def __init__(self, model: torch.nn.Module, example_input: Any, evaluate_fn: EvaluateFn,
                 reward_fn: RewardFn = amc_mac_constrained_reward_fn, target_density: Optional[float] = None,
                 cost_fn: Optional[Callable[[torch.Tensor], float]] = None,
                 action_range: tuple[float, float] = (0.0, 0.8),
                 calibrate_fn: Optional[Callable[[torch.nn.Module], None]] = None) -> None:
        low, high = action_range
        if not 0 <= low <= high < 1:
            raise ArgumentError(f"action_range must satisfy 0 <= min <= max < 1, got {action_range!r}",
                                argument="action_range")
        self.model, self.evaluate_fn, self.reward_fn = model, evaluate_fn, reward_fn
        self.calibrate_fn, self.action_range = calibrate_fn, (float(low), float(high))
        self.deps = DependencyGraph(model, example_input)
        self.costs = LayerCosts(self.deps)
        #: The dense model's MACs per sample.
        self.dense_macs = float(self.costs.dense_macs)
        self._importance = weight_importance(self.deps, "Filters")
        self.steps = self._make_steps()
        self._scale = [max(abs(s.features[i]) for s in self.steps) or 1.0 for i in range(len(STATE_FEATURES) - 3)]
        self._touching = [self.costs.touching(step.channels) for step in self.steps]
        self.target_density: Optional[float] = None
        self.cost_fn: Callable[[torch.Tensor], float] = self.costs.total
        self.set_budget(target_density, cost_fn)

    # ------------------------------------------------------------------------------------ setup
    def _make_steps(self) -> list[PruningStep]:
        deps, low_keep = self.deps, self._minimum_keep()
        dense = self.costs.layer_macs(deps.in_use)
        steps: list[PruningStep] = []
        for group in deps.groups():
            channels = torch.tensor(group.channels)
            removable = channels[~low_keep[channels]]
            limit = min(removable.numel(), math.floor(self.action_range[1] * len(group) + 1e-9))
            if limit == 0:
                continue
            order = removable[torch.argsort(self._importance[removable], stable=True)]
            layers = _producers(deps, group)
            in_channels, kernel, stride, spatial = _layer_features(deps, layers[0])
            macs = float(dense[self.costs.touching(channels)].sum())
            features = (float(len(steps)), float(len(layers) > 1), in_channels, float(len(group)), kernel, stride,
                        spatial, macs)
            steps.append(PruningStep(layers, channels, order, limit, features))
        if not steps:
            reasons = collections.Counter(deps.blocked.values())
            why = first_few([f"{count} channel(s) because {reason}" for reason, count in reasons.most_common()],
                            3, "; ")
            raise ThinningError("AMC found no channel group of the model that thinning can shrink"
                                + (f"; channels kept whole: {why}" if why else ""))
        return steps

    def _minimum_keep(self) -> torch.Tensor:
        """The channels kept when every removable channel goes (layout constraints keep some)."""
        keep, _ = self.deps.removable(lambda d: d.in_use & ~d.blocked_mask(), self._importance)
        return keep

    def set_budget(self, target_density: Optional[float], cost_fn: Optional[Callable[[torch.Tensor], float]] = None,
                   cost_name: str = "density") -> None:
        """Sets the budget: keep ``target_density`` of ``cost_fn`` (None: MACs); ``target_density=None``
        removes the budget. Starts a new episode (:meth:`reset`). ``cost_name`` names the target in messages
        (``'target latency 0.5 is unreachable'``).

        Raises:
            ArgumentError: a density outside (0, 1) or below what the groups can reach.
        """
        self.reset()
        self.cost_fn = cost_fn or self.costs.total
        self.target_density = target_density
        if target_density is None:
            return
        if isinstance(target_density, bool) or not 0 < target_density < 1:
            raise ArgumentError(f"target {cost_name} must be in (0, 1), got {target_density!r}",
                                argument="target_density")
        dense = self.cost_fn(self.deps.in_use)
        floor = self.cost_fn(self.narrowest())
        if floor > target_density * dense:
            lowest = math.ceil(floor / dense * 1e4) / 1e4
            raise ArgumentError(
                f"target {cost_name} {target_density:g} is unreachable: with every prunable channel group pruned "
                f"as far as allowed (at most {self.action_range[1]:g} of its channels, within the layout "
                f"constraints) the model keeps {lowest:.4f} of its dense {'MACs' if cost_fn is None else 'cost'}; "
                f"choose a target {cost_name} of at least {lowest:.4f} or a larger maximum action",
                argument="target_density")
        self._target = target_density * dense

    # ---------------------------------------------------------------------------------- episode
    def reset(self) -> tuple[torch.Tensor, dict[str, Any]]:
        """Starts an episode with the dense model; returns the first observation and an empty info dict."""
        self._t = 0
        self._removed = torch.zeros(self.deps.size, dtype=torch.bool)
        self._keep = self.deps.in_use.clone()
        self._actions: list[float] = []
        return self._observation(), {}

    def action_bounds(self) -> tuple[float, float]:
        """The range the current step's action is clipped to (shares of the group's channels)."""
        step = self.steps[self._t]
        size = step.channels.numel()
        return self._min_count() / size, step.max_remove / size

    def step(self, action: float) -> tuple[torch.Tensor, float, bool, bool, dict[str, Any]]:
        """Removes ``action`` (clipped to :meth:`action_bounds`) of the current group's channels.

        Returns:
            ``(observation, reward, terminated, truncated, info)``: ``info['action']`` is the share removed
            (after clipping); the reward is 0 until the last step, whose ``info['result']`` is the
            :class:`EpisodeResult`.
        """
        if self._t >= len(self.steps):
            raise RuntimeError("the episode is over: call reset()")
        step = self.steps[self._t]
        size = step.channels.numel()
        count = min(max(round(float(action) * size), self._min_count(), round(self.action_range[0] * size)),
                    step.max_remove)
        self._removed[step.order[:count]] = True
        self._keep, _ = self.deps.removable(lambda d: self._removed & ~d.blocked_mask(), self._importance)
        self._actions.append(count / size)
        self._t += 1
        info: dict[str, Any] = {"action": self._actions[-1]}
        if self._t < len(self.steps):
            return self._observation(), 0.0, False, False, info
        info["result"] = self._finish()
        return self._observation(), info["result"].reward, True, False, info

    def thinned(self, keep: torch.Tensor) -> tuple[ThinningRecipe, torch.nn.Module]:
        """The thinning that keeps the channels ``keep`` (bool per channel id) and the thinned copy of the
        model."""
        recipe = ThinningRecipe.from_plan(self.deps.kept_positions(keep))
        return recipe, thinned_copy(self.model, recipe)

    def _finish(self) -> EpisodeResult:
        recipe, network = self.thinned(self._keep)
        if self.calibrate_fn is not None:
            self.calibrate_fn(network)
        top1, top5, loss = (float(v) for v in self.evaluate_fn(network))
        macs = self.costs.total(self._keep)
        reward = float(self.reward_fn(self, top1, top5, loss, macs))
        return EpisodeResult(tuple(self._actions), top1, top5, loss, macs, macs / self.dense_macs,
                             self.cost_fn(self._keep), reward, recipe, network)

    # --------------------------------------------------------------------------------- budgeting
    def narrowest(self) -> torch.Tensor:
        """The kept channels (bool per channel id) of the smallest network an episode can produce."""
        removed = torch.zeros(self.deps.size, dtype=torch.bool)
        for step in self.steps:
            removed[step.order[:step.max_remove]] = True
        return self.deps.in_use & ~removed

    def _keep_with(self, current: int, count: int) -> torch.Tensor:
        """The (unverified) kept channels with the decisions so far, ``count`` channels of step ``current``
        removed and every later step at its maximum."""
        removed = self._removed.clone()
        removed[self.steps[current].order[:count]] = True
        for step in self.steps[current + 1:]:
            removed[step.order[:step.max_remove]] = True
        return self.deps.in_use & ~removed

    def _min_count(self) -> int:
        """The fewest channels the current step must remove for the budget to stay reachable."""
        if self.target_density is None:
            return 0
        step = self.steps[self._t]
        low, high = 0, step.max_remove
        while low < high:  # the cost falls as the count grows: binary search for the first fitting count
            middle = (low + high) // 2
            if self.cost_fn(self._keep_with(self._t, middle)) <= self._target:
                high = middle
            else:
                low = middle + 1
        return low

    # ------------------------------------------------------------------------------- observation
    def _observation(self) -> torch.Tensor:
        index = min(self._t, len(self.steps) - 1)
        static = [value / scale for value, scale in zip(self.steps[index].features, self._scale)]
        layer_macs = self.costs.layer_macs(self._keep)
        later = torch.zeros(len(self.costs.layers), dtype=torch.bool)
        for touching in self._touching[self._t + 1:]:
            later |= touching
        reduced = (self.dense_macs - float(layer_macs.sum())) / self.dense_macs
        rest = float(layer_macs[later].sum()) / self.dense_macs
        previous = self._actions[-1] if self._actions else 0.0
        return torch.tensor(static + [reduced, rest, previous], dtype=torch.float32)
