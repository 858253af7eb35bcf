"""AMCEnvironment: episode semantics, budget clipping, exact MAC accounting, bad input."""
import pytest
import torch
from torch import nn

from distiller.amc import STATE_FEATURES, AMCEnvironment, amc_mac_constrained_reward_fn
from distiller.errors import ArgumentError
from distiller.graph import GraphCaptureError
from distiller.summaries.compute import model_macs
from distiller.testing import TinyCNN, TinyConcatNet, TinyResidualNet
from distiller.thinning import ThinningError

from .conftest import EXAMPLE, DepthwiseNet, constant_scores


def run_episode(env: AMCEnvironment, actions) -> tuple[list, dict]:
    env.reset()
    rewards = []
    for action in actions:
        _, reward, done, truncated, info = env.step(action)
        rewards.append((reward, done, truncated))
        if done:
            return rewards, info
    raise AssertionError("the episode did not end")


def test_an_episode_takes_one_step_per_prunable_group_and_rewards_at_the_end():
    model = TinyCNN()
    env = AMCEnvironment(model, EXAMPLE, lambda net: (80.0, 95.0, 0.5))
    assert [step.layers for step in env.steps] == [("conv1",), ("conv2",)]  # fc's outputs are the model's
    observation, info = env.reset()
    assert observation.shape == (len(STATE_FEATURES),) and info == {}
    rewards, info = run_episode(env, [0.5, 0.25])
    assert rewards == [(0.0, False, False), (0.8, True, False)]
    result = info["result"]
    assert result.actions == (0.5, 0.25) and info["action"] == 0.25
    assert (result.top1, result.top5, result.loss) == (80.0, 95.0, 0.5)
    assert result.model.conv1.out_channels == 4 and result.model.conv2.out_channels == 12
    assert model.conv1.out_channels == 8  # the environment thins copies
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0.1)


def test_the_observation_tracks_reduced_and_remaining_macs():
    env = AMCEnvironment(TinyCNN(), EXAMPLE, constant_scores)
    first, _ = env.reset()
    reduced, rest = STATE_FEATURES.index("reduced"), STATE_FEATURES.index("rest")
    previous = STATE_FEATURES.index("previous_action")
    second, *_ = env.step(0.5)
    assert first[reduced] == 0 and second[reduced] > 0
    assert second[rest] < first[rest]
    assert second[previous] == 0.5 and first[previous] == 0


@pytest.mark.parametrize("model", [TinyCNN(), TinyResidualNet(), DepthwiseNet(), TinyConcatNet()],
                         ids=lambda m: type(m).__name__)
def test_predicted_macs_are_the_thinned_networks_macs(model):
    env = AMCEnvironment(model, EXAMPLE, constant_scores)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        _, info = run_episode(env, torch.rand(len(env.steps), generator=generator).tolist())
        result = info["result"]
        assert result.macs == model_macs(result.model, EXAMPLE)
        assert result.density == pytest.approx(result.macs / model_macs(model, EXAMPLE))


@pytest.mark.parametrize("model", [TinyCNN(), TinyResidualNet(), DepthwiseNet()], ids=lambda m: type(m).__name__)
def test_clipping_reaches_the_target_even_when_the_agent_prunes_nothing(model):
    env = AMCEnvironment(model, EXAMPLE, constant_scores, target_density=0.5)
    _, info = run_episode(env, [0.0] * len(env.steps))
    result = info["result"]
    assert model_macs(result.model, EXAMPLE) <= 0.5 * model_macs(model, EXAMPLE)
    assert max(result.actions) > 0
    low, high = AMCEnvironment(model, EXAMPLE, constant_scores, target_density=0.5).action_bounds()
    assert 0 <= low <= high <= 0.8


def test_without_a_budget_actions_are_only_bounded_by_the_action_range():
    env = AMCEnvironment(TinyCNN(), EXAMPLE, constant_scores, action_range=(0.25, 0.5))
    _, info = run_episode(env, [0.0, 1.0])
    assert info["result"].actions == (0.25, 0.5)


def test_the_reward_function_gets_the_scores_and_the_macs():
    seen = []

    def reward_fn(env, top1, top5, vloss, total_macs):
        seen.append((top1, top5, vloss, total_macs))
        return amc_mac_constrained_reward_fn(env, top1, top5, vloss, total_macs)

    env = AMCEnvironment(TinyCNN(), EXAMPLE, lambda net: (70.0, 90.0, 2.0), reward_fn)
    _, info = run_episode(env, [0.5, 0.5])
    assert seen == [(70.0, 90.0, 2.0, info["result"].macs)] and info["result"].reward == pytest.approx(0.7)


def test_each_network_is_calibrated_before_it_is_evaluated():
    calls = []
    env = AMCEnvironment(TinyCNN(), EXAMPLE, lambda net: calls.append(("evaluate", net)) or (1.0, 1.0, 1.0),
                         calibrate_fn=lambda net: calls.append(("calibrate", net)))
    _, info = run_episode(env, [0.5, 0.5])
    assert calls == [("calibrate", info["result"].model), ("evaluate", info["result"].model)]


def test_an_unreachable_target_names_the_lowest_reachable_density():
    with pytest.raises(ArgumentError, match=r"target density 0.05 is unreachable.*at least 0\.\d+"):
        AMCEnvironment(TinyCNN(), EXAMPLE, constant_scores, target_density=0.05)


@pytest.mark.parametrize("kwargs", [{"target_density": 1.0}, {"action_range": (0.5, 0.2)},
                                    {"action_range": (0.0, 1.0)}])
def test_bad_budget_arguments_are_argument_errors(kwargs):
    with pytest.raises(ArgumentError):
        AMCEnvironment(TinyCNN(), EXAMPLE, constant_scores, **kwargs)


def test_a_model_with_nothing_to_prune_names_what_blocks_it():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten())
    with pytest.raises(ThinningError, match="no channel group.*channels kept whole: 4 channel"):
        AMCEnvironment(model, EXAMPLE, constant_scores)


class ChannelRoll(nn.Module):
    """conv -> torch.roll over channels -> conv: thinning does not know how roll maps channels."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.roll(self.a(x), 1, dims=1))


class DataDependent(ChannelRoll):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        return self.b(y * 2 if y.sum() > 0 else y)


def test_a_model_thinning_cannot_handle_is_refused_naming_the_node():
    with pytest.raises(ThinningError, match=r"consumed by 'roll' \(roll\), whose channel mapping thinning does "
                                            r"not know"):
        AMCEnvironment(ChannelRoll(), EXAMPLE, constant_scores)
    with pytest.raises(GraphCaptureError, match="cannot trace DataDependent.forward"):
        AMCEnvironment(DataDependent(), EXAMPLE, constant_scores)
