"""amc_search: warm-up then agent episodes, per-episode CSV rows, the best network, credit assignment."""
import csv

import pytest

from distiller.amc import AMCEnvironment, DDPGAgent, DDPGConfig, amc_search
from distiller.amc import search as search_module
from distiller.errors import ArgumentError
from distiller.testing import TinyCNN

from .conftest import EXAMPLE


def kept_share(network) -> tuple[float, float, float]:
    """Scores that grow with the channels kept, so rewards differ between episodes."""
    top1 = 100 * (network.conv1.out_channels + network.conv2.out_channels) / 24
    return top1, top1, 1.0


def test_the_search_records_every_episode_and_returns_the_best(tmp_path, monkeypatch):
    plotted = []
    monkeypatch.setattr(search_module, "plot_episodes", lambda records, fname: plotted.append((records, fname)))
    env = AMCEnvironment(TinyCNN(), EXAMPLE, kept_share)
    agent = DDPGAgent(len(env.reset()[0]), env.action_range, DDPGConfig(hidden=8, batch_size=4), seed=0)
    seen = []
    best, records = amc_search(env, agent, 2, 2, save_dir=str(tmp_path),
                               on_episode=lambda record, result, is_best: seen.append((record, is_best)))
    assert [r.phase for r in records] == ["heatup", "heatup", "training", "training"]
    assert best.reward == max(r.reward for r in records)
    assert [is_best for _, is_best in seen][0] and sum(is_best for _, is_best in seen) >= 1
    with open(tmp_path / "amc.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["episode"]) for row in rows] == [0, 1, 2, 3]
    assert [float(row["reward"]) for row in rows] == pytest.approx([r.reward for r in records])
    assert rows[0]["actions"] == " ".join(f"{a:.4f}" for a in records[0].actions)
    assert plotted == [(records, str(tmp_path / "amc.png"))]
    assert agent.sigma < 0.5  # narrowed after the training episodes only
    assert agent.sigma == pytest.approx(0.5 * 0.95 ** 2)


def test_every_step_of_an_episode_is_credited_with_its_reward():
    env = AMCEnvironment(TinyCNN(), EXAMPLE, kept_share)
    agent = DDPGAgent(len(env.reset()[0]), env.action_range, seed=0)
    amc_search(env, agent, 3, 0)
    rewards = [t.reward for t in agent.buffer._items]
    assert len(rewards) == 3 * len(env.steps)
    for episode in range(3):
        steps = rewards[episode * len(env.steps):(episode + 1) * len(env.steps)]
        assert len(set(steps)) == 1
    assert rewards[0] == 0.0 and rewards[-1] != 0.0  # the first episode is the baseline


def test_no_episode_is_an_argument_error():
    env = AMCEnvironment(TinyCNN(), EXAMPLE, kept_share)
    with pytest.raises(ArgumentError, match="at least one episode"):
        amc_search(env, DDPGAgent(len(env.reset()[0]), env.action_range), 0, 0)
