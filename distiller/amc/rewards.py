"""AMC's reward functions: how good a pruned network is, from its validation scores and its compute.

Each takes Distiller's arguments ``(env, top1, top5, vloss, total_macs)``: the environment (for the dense
model's MACs), the pruned network's validation top-1 and top-5 (percent) and loss, and its MACs per sample.
He et al., "AMC: AutoML for Model Compression and Acceleration on Mobile Devices" (ECCV 2018), section 3.4.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol

__all__ = ["amc_mac_constrained_reward_fn", "amc_accuracy_guarantee_reward_fn", "harmonic_mean_reward_fn",
           "RewardFn", "REWARDS"]


class _DenseMacs(Protocol):
    dense_macs: float


#: ``fn(env, top1, top5, vloss, total_macs) -> reward``.
RewardFn = Callable[[_DenseMacs, float, float, float, float], float]


def amc_mac_constrained_reward_fn(env: _DenseMacs, top1: float, top5: float, vloss: float,
                                  total_macs: float) -> float:
    """Resource-constrained compression: the budget is enforced by the action clipping, so the reward is
    the accuracy alone (``top1 / 100``)."""
    del env, top5, vloss, total_macs
    return top1 / 100


def amc_accuracy_guarantee_reward_fn(env: _DenseMacs, top1: float, top5: float, vloss: float,
                                     total_macs: float) -> float:
    """Accuracy-guaranteed compression: ``-error * log(MACs)`` (the paper's R_FLOPs), which rewards fewer MACs
    ever more weakly as the error grows, so the search finds the smallest network that keeps its accuracy."""
    del env, top5, vloss
    return -(1 - top1 / 100) * math.log(total_macs)


def harmonic_mean_reward_fn(env: _DenseMacs, top1: float, top5: float, vloss: float, total_macs: float,
                            beta: float = 1.0) -> float:
    """The F-beta score of accuracy and compression: the weighted harmonic mean of ``top1 / 100`` and the
    share of MACs removed (``beta > 1`` weighs compression more). Zero when either is zero."""
    del top5, vloss
    accuracy, removed = top1 / 100, 1 - total_macs / env.dense_macs
    if accuracy <= 0 or removed <= 0:
        return 0.0
    return (1 + beta ** 2) * accuracy * removed / (beta ** 2 * accuracy + removed)


#: ``--amc-protocol`` -> its reward.
REWARDS: dict[str, RewardFn] = {
    "mac-constrained": amc_mac_constrained_reward_fn,
    "latency-constrained": amc_mac_constrained_reward_fn,
    "accuracy-guaranteed": amc_accuracy_guarantee_reward_fn,
    "harmonic-mean": harmonic_mean_reward_fn,
}
