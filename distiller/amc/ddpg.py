"""A DDPG agent for AMC: deterministic actor, Q critic, target networks, replay buffer, truncated-normal
exploration.

Lillicrap et al., "Continuous control with deep reinforcement learning" (ICLR 2016), with AMC's settings
(He et al., ECCV 2018, section 3.5): two hidden layers of 300 units, a sigmoid action scaled to the action
range, exploration by a normal distribution around the actor's action, truncated to the range, whose width
decays geometrically every episode; rewards minus their moving average (a baseline that lowers the variance
of the critic's targets). Plain PyTorch (no RL library is needed).
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Optional

import torch
from torch import nn

__all__ = ["DDPGAgent", "DDPGConfig", "ReplayBuffer", "Transition"]


@dataclasses.dataclass(frozen=True)
class DDPGConfig:
    """The agent's hyper-parameters (AMC's defaults).

    Attributes:
        hidden: units of each of the two hidden layers of the actor and critic.
        lr_actor, lr_critic: Adam learning rates.
        tau: soft-update rate of the target networks.
        discount: the discount of the critic's bootstrapped target; 0 when the rewards are the returns
            (:func:`~distiller.amc.amc_search` credits every step with its episode's reward).
        batch_size: transitions per update.
        replay_size: transitions the buffer keeps (the oldest go first).
        noise_sigma: the initial width of the exploration noise (in action units).
        noise_decay: its factor per :meth:`DDPGAgent.end_episode`.
        baseline_decay: the weight of the past in the reward moving average.
    """
    hidden: int = 300
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    discount: float = 0.0
    batch_size: int = 64
    replay_size: int = 2000
    noise_sigma: float = 0.5
    noise_decay: float = 0.95
    baseline_decay: float = 0.5


@dataclasses.dataclass(frozen=True)
class Transition:
    """One step: state, action, reward, next state, and whether the episode ended there."""
    state: torch.Tensor
    action: float
    reward: float
    next_state: torch.Tensor
    done: bool


class ReplayBuffer:
    """A ring buffer of transitions, sampled uniformly.

    Args:
        capacity: transitions kept.
        generator: the random generator for sampling.
    """

    def __init__(self, capacity: int, generator: torch.Generator) -> None:
        self.capacity, self.generator = capacity, generator
        self._items: list[Transition] = []
        self._next = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, transition: Transition) -> None:
        """Stores ``transition``, replacing the oldest when full."""
        if len(self._items) < self.capacity:
            self._items.append(transition)
        else:
            self._items[self._next] = transition
        self._next = (self._next + 1) % self.capacity

    def sample(self, count: int) -> tuple[torch.Tensor, ...]:
        """``count`` transitions (with replacement) as batched ``(states, actions, rewards, next_states,
        done)`` tensors (actions, rewards and done shaped ``[count, 1]``)."""
        picks = torch.randint(len(self._items), (count,), generator=self.generator).tolist()
        batch = [self._items[i] for i in picks]
        column = lambda values: torch.tensor(values, dtype=torch.float32).unsqueeze(1)  # noqa: E731
        return (torch.stack([t.state for t in batch]), column([t.action for t in batch]),
                column([t.reward for t in batch]), torch.stack([t.next_state for t in batch]),
                column([float(t.done) for t in batch]))


def _mlp(inputs: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 1))


class DDPGAgent:
    """Learns a deterministic policy ``state -> action in [low, high]``.

    Args:
        state_size: the observation's length.
        action_range: ``(low, high)``.
        config: a :class:`DDPGConfig`.
        seed: seeds the networks' initialisation, the noise and the replay sampling.

    Example:
        >>> agent = DDPGAgent(11, (0.0, 0.8), seed=0)
        >>> action = agent.explore(state)        # actor + truncated-normal noise
        >>> agent.observe(Transition(state, action, reward, next_state, done))
        >>> agent.update()                       # one gradient step of the critic and the actor
        >>> agent.end_episode()                  # the noise narrows
    """

    def __init__(self, state_size: int, action_range: tuple[float, float], config: Optional[DDPGConfig] = None,
                 seed: int = 0) -> None:
        self.config = config or DDPGConfig()
        self.low, self.high = action_range
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.actor = nn.Sequential(_mlp(state_size, self.config.hidden), nn.Sigmoid())
            self.critic = _mlp(state_size + 1, self.config.hidden)
        self.actor_target, self.critic_target = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=self.config.lr_actor)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.config.lr_critic)
        self.buffer = ReplayBuffer(self.config.replay_size, self.generator)
        self.sigma = self.config.noise_sigma
        self.baseline: Optional[float] = None

    def act(self, state: torch.Tensor) -> float:
        """The actor's action for ``state`` (no noise)."""
        with torch.no_grad():
            return self._scaled(self.actor(state.unsqueeze(0))).item()

    def _scaled(self, unit: torch.Tensor) -> torch.Tensor:
        return self.low + (self.high - self.low) * unit

    def explore(self, state: torch.Tensor) -> float:
        """The actor's action plus normal noise of width :attr:`sigma`, truncated to the action range."""
        value = torch.empty(1)
        torch.nn.init.trunc_normal_(value, mean=self.act(state), std=max(self.sigma, 1e-6), a=self.low, b=self.high,
                                    generator=self.generator)
        return float(value.item())

    def random_action(self) -> float:
        """A uniformly random action (warm-up episodes)."""
        return self.low + (self.high - self.low) * float(torch.rand(1, generator=self.generator).item())

    def observe(self, transition: Transition) -> None:
        """Adds ``transition`` to the replay buffer."""
        self.buffer.add(transition)

    def advantage(self, reward: float) -> float:
        """``reward`` minus the moving average of the rewards seen so far (then updated with ``reward``)."""
        baseline = reward if self.baseline is None else self.baseline
        self.baseline = self.config.baseline_decay * baseline + (1 - self.config.baseline_decay) * reward
        return reward - baseline

    def update(self) -> tuple[float, float]:
        """One gradient step of the critic (towards ``r + discount * Q'(s', actor'(s'))``) and of the actor
        (up the critic's value), then a soft update of the target networks; returns ``(critic loss, actor
        loss)``. Does nothing (returns NaNs) while the buffer holds fewer transitions than a batch."""
        if len(self.buffer) < self.config.batch_size:
            return float("nan"), float("nan")
        states, actions, rewards, next_states, done = self.buffer.sample(self.config.batch_size)
        with torch.no_grad():
            next_q = self.critic_target(torch.cat([next_states, self._scaled(self.actor_target(next_states))], 1))
            target = rewards + self.config.discount * (1 - done) * next_q
        critic_loss = nn.functional.mse_loss(self.critic(torch.cat([states, actions], 1)), target)
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        actor_loss = -self.critic(torch.cat([states, self._scaled(self.actor(states))], 1)).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        for network, target_network in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            for param, target_param in zip(network.parameters(), target_network.parameters()):
                target_param.data.lerp_(param.data, self.config.tau)
        return critic_loss.item(), actor_loss.item()

    def end_episode(self) -> None:
        """Narrows the exploration noise (call after each training episode)."""
        self.sigma *= self.config.noise_decay
