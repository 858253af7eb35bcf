"""The DDPG agent: replay buffer, exploration noise, updates."""
import math

import pytest
import torch

from distiller.amc import DDPGAgent, DDPGConfig, ReplayBuffer, Transition

STATE = torch.full((3,), 0.5)


def transition(action: float, reward: float) -> Transition:
    return Transition(STATE, action, reward, STATE, True)


def test_the_replay_buffer_replaces_its_oldest_transitions():
    buffer = ReplayBuffer(3, torch.Generator().manual_seed(0))
    for i in range(5):
        buffer.add(transition(i / 10, float(i)))
    assert len(buffer) == 3
    states, actions, rewards, next_states, done = buffer.sample(50)
    assert set(rewards.reshape(-1).tolist()) == {2.0, 3.0, 4.0}
    assert states.shape == next_states.shape == (50, 3) and actions.shape == done.shape == (50, 1)


def test_exploration_stays_in_the_action_range_and_narrows_every_episode():
    agent = DDPGAgent(3, (0.1, 0.6), DDPGConfig(noise_sigma=0.5, noise_decay=0.5), seed=0)
    actions = [agent.explore(STATE) for _ in range(200)]
    assert 0.1 <= min(actions) and max(actions) <= 0.6 and max(actions) - min(actions) > 0.3
    agent.end_episode()
    agent.end_episode()
    assert agent.sigma == pytest.approx(0.125)
    agent.sigma = 0.0
    assert agent.explore(STATE) == pytest.approx(agent.act(STATE), abs=1e-5)
    assert all(0.1 <= agent.random_action() <= 0.6 for _ in range(20))


def test_an_update_needs_a_full_batch_then_changes_actor_and_critic():
    agent = DDPGAgent(3, (0.0, 1.0), DDPGConfig(hidden=16, batch_size=8), seed=0)
    actor = [p.clone() for p in agent.actor.parameters()]
    critic = [p.clone() for p in agent.critic.parameters()]
    for i in range(7):
        agent.observe(transition(i / 7, 1.0))
    assert all(math.isnan(loss) for loss in agent.update())
    assert all(torch.equal(a, b) for a, b in zip(actor, agent.actor.parameters()))
    agent.observe(transition(1.0, 1.0))
    critic_loss, actor_loss = agent.update()
    assert critic_loss > 0 and not math.isnan(actor_loss)
    assert not all(torch.equal(a, b) for a, b in zip(actor, agent.actor.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(critic, agent.critic.parameters()))


def test_the_actor_moves_towards_the_rewarded_action():
    config = DDPGConfig(hidden=32, batch_size=32, lr_actor=1e-3, lr_critic=1e-2)
    agent = DDPGAgent(3, (0.0, 1.0), config, seed=0)
    generator = torch.Generator().manual_seed(1)
    for action in torch.rand(128, generator=generator).tolist():
        agent.observe(transition(action, -4 * (action - 0.8) ** 2))
    before = agent.act(STATE)
    for _ in range(150):
        agent.update()
    assert abs(agent.act(STATE) - 0.8) < 0.1 < abs(before - 0.8)


def test_the_advantage_subtracts_a_moving_average_of_rewards():
    agent = DDPGAgent(3, (0.0, 1.0), DDPGConfig(baseline_decay=0.5), seed=0)
    assert agent.advantage(1.0) == 0.0
    assert agent.advantage(3.0) == pytest.approx(2.0)
    assert agent.baseline == pytest.approx(2.0)
