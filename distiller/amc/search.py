"""AMC's search loop: warm-up episodes with random actions, then episodes driven by the DDPG agent; the
best-rewarded network wins. One CSV row per episode (``amc.csv``) and a plot of reward and top-1 per
episode (``amc.png``).

Only an episode's last step is rewarded, so every step's return is the episode's reward: each transition is
credited with it (minus the moving average of earlier rewards, :meth:`DDPGAgent.advantage`), as AMC's
implementation does, and the critic regresses on these returns directly (the agent's ``discount`` 0).
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import os
import time
from typing import Callable, Optional, cast

from tqdm import tqdm

from ..errors import ArgumentError
from .ddpg import DDPGAgent, Transition
from .environment import AMCEnvironment, EpisodeResult

msglogger = logging.getLogger(__name__)

__all__ = ["amc_search", "EpisodeRecord", "plot_episodes", "CSV_NAME", "PLOT_NAME"]

#: The per-episode files written to ``save_dir``.
CSV_NAME, PLOT_NAME = "amc.csv", "amc.png"


@dataclasses.dataclass(frozen=True)
class EpisodeRecord:
    """One row of ``amc.csv``: the episode's network (``cost_fraction``: its budgeted cost over the dense
    model's; ``actions``: the share of each group's channels removed) and the search's state."""
    episode: int
    phase: str
    reward: float
    top1: float
    top5: float
    loss: float
    macs: float
    density: float
    cost_fraction: float
    noise_sigma: float
    seconds: float
    actions: tuple[float, ...]


def _write_row(path: str, row: list, mode: str) -> None:
    with open(path, mode, newline="") as f:
        csv.writer(f).writerow(row)


def _record(env: AMCEnvironment, episode: int, phase: str, result: EpisodeResult, sigma: float,
            seconds: float) -> EpisodeRecord:
    dense_cost = env.cost_fn(env.deps.in_use)
    return EpisodeRecord(episode, phase, result.reward, result.top1, result.top5, result.loss, result.macs,
                         result.density, result.cost / dense_cost, sigma, seconds, result.actions)


def _run_episode(env: AMCEnvironment, agent: DDPGAgent, warm_up: bool) -> EpisodeResult:
    state, _ = env.reset()
    transitions = []
    while True:
        action = agent.random_action() if warm_up else agent.explore(state)
        next_state, reward, done, _, info = env.step(action)
        transitions.append((state, info["action"], next_state, done))
        state = next_state
        if done:
            result: EpisodeResult = info["result"]
            break
    advantage = agent.advantage(result.reward)
    for state, action, next_state, done in transitions:
        agent.observe(Transition(state, action, advantage, next_state, done))
    if not warm_up:
        for _ in transitions:
            agent.update()
        agent.end_episode()
    return result


def amc_search(env: AMCEnvironment, agent: DDPGAgent, heatup_episodes: int, training_episodes: int,
               save_dir: Optional[str] = None,
               on_episode: Optional[Callable[[EpisodeRecord, EpisodeResult, bool], None]] = None
               ) -> tuple[EpisodeResult, list[EpisodeRecord]]:
    """Runs ``heatup_episodes`` random episodes then ``training_episodes`` agent episodes.

    Args:
        env: the environment.
        agent: a :class:`DDPGAgent` whose action range is the environment's, with ``discount`` 0 (the
            transitions carry their returns).
        heatup_episodes, training_episodes: episode counts (at least one episode in all).
        save_dir: directory for ``amc.csv`` (a row per episode, written as it ends) and ``amc.png``; None
            writes nothing.
        on_episode: optional ``fn(record, result, is_best)`` called after each episode (e.g. to save the
            best network).
    Returns:
        ``(best, records)``: the best-rewarded :class:`EpisodeResult` and a record per episode.
    Raises:
        ArgumentError: a negative episode count, or no episode at all.
    """
    for name, count in (("heatup_episodes", heatup_episodes), ("training_episodes", training_episodes)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ArgumentError(f"{name} must be an integer >= 0, got {count!r}", argument=name)
    if heatup_episodes + training_episodes == 0:
        raise ArgumentError("AMC needs at least one episode: raise the warm-up or training episodes",
                            argument="training_episodes")
    csv_path = os.path.join(save_dir, CSV_NAME) if save_dir is not None else None
    if csv_path is not None:
        os.makedirs(os.path.dirname(csv_path), exist_ok=True)
        _write_row(csv_path, [field.name for field in dataclasses.fields(EpisodeRecord)], "w")
    best: Optional[EpisodeResult] = None
    records: list[EpisodeRecord] = []
    total = heatup_episodes + training_episodes
    progress = tqdm(range(total), desc="AMC", unit="episode", disable=None)
    for episode in progress:
        phase = "heatup" if episode < heatup_episodes else "training"
        sigma, started = agent.sigma, time.time()
        result = _run_episode(env, agent, phase == "heatup")
        record = _record(env, episode, phase, result, sigma if phase == "training" else float("nan"),
                         time.time() - started)
        records.append(record)
        is_best = best is None or result.reward > best.reward
        if is_best:
            best = result
        if csv_path is not None:
            _write_row(csv_path, [*dataclasses.astuple(record)[:-1], " ".join(f"{a:.4f}" for a in record.actions)],
                       "a")
        msglogger.info("AMC episode %d (%s): reward %.4f top1 %.2f MACs %.1f%% cost %.1f%%%s", episode, phase,
                       record.reward, record.top1, 100 * record.density, 100 * record.cost_fraction,
                       " (best)" if is_best else "")
        progress.set_postfix(reward=f"{record.reward:.3f}", top1=f"{record.top1:.1f}",
                             best=f"{best.reward:.3f}" if best else "")
        if on_episode is not None:
            on_episode(record, result, is_best)
    if save_dir is not None and records:
        plot_episodes(records, os.path.join(save_dir, PLOT_NAME))
    return cast(EpisodeResult, best), records


def plot_episodes(records: list[EpisodeRecord], fname: str) -> None:
    """Plots reward and validation top-1 per episode (warm-up episodes shaded) to the image ``fname``."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

    figure = Figure(figsize=(8, 6), dpi=100, layout="constrained")
    reward_axes, top1_axes = figure.subplots(2, 1, sharex=True)
    episodes = [r.episode for r in records]
    reward_axes.plot(episodes, [r.reward for r in records], marker=".")
    reward_axes.set_ylabel("reward")
    top1_axes.plot(episodes, [r.top1 for r in records], marker=".", color="tab:orange")
    top1_axes.set_ylabel("validation top-1 (%)")
    top1_axes.set_xlabel("episode")
    heatup = [r.episode for r in records if r.phase == "heatup"]
    for axes in (reward_axes, top1_axes):
        axes.grid(True)
        if heatup:
            axes.axvspan(min(heatup) - 0.5, max(heatup) + 0.5, color="grey", alpha=0.15, label="warm-up")
    if heatup:
        reward_axes.legend(loc="lower right")
    figure.suptitle("AMC search")
    figure.savefig(fname, format="png")
