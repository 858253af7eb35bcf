"""Element-wise AGP: targets per epoch against the closed-form schedule of Zhu & Gupta 2017."""
import math
import types

import pytest
import torch
import yaml

from distiller.config import dict_config
from distiller.errors import ArgumentError
from distiller.policy import PruningPolicy
from distiller.pruning import AgpPruningRate, agp_target_sparsity
from distiller.registry import PRUNERS
from distiller.scheduler import CompressionScheduler

SCHEDULES = [  # (initial, final, starting_epoch, ending_epoch, frequency)
    (0.05, 0.80, 0, 30, 2),   # Distiller's documentation example
    (0.0, 0.5, 5, 16, 1),
    (0.2, 0.9, 2, 12, 3),
    (0.1, 0.6, 0, 8, 4),
]


def closed_form_targets(initial, final, start, end, freq):
    """s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n * dt))**3 over the pruning epochs t_0, t_0 + dt, ..."""
    epochs = list(range(start, end, freq))
    n_dt = epochs[-1] - epochs[0]
    return {t: final + (initial - final) * (1 - (t - start) / n_dt) ** 3 for t in epochs}


def test_distiller_example_hand_values():
    targets = closed_form_targets(0.05, 0.80, 0, 30, 2)
    assert targets[0] == pytest.approx(0.05)
    assert targets[14] == pytest.approx(0.80 - 0.75 * 0.5 ** 3)
    assert targets[28] == pytest.approx(0.80)
    assert max(targets) == 28


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_agp_target_sparsity_matches_closed_form(schedule):
    initial, final, start, end, freq = schedule
    for epoch, expected in closed_form_targets(*schedule).items():
        assert agp_target_sparsity(initial, final, start, end, freq, epoch) == pytest.approx(expected, abs=1e-12)


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


def agp_scheduler(model, initial, final, start, end, freq, weights=("conv1.weight", "conv2.weight", "fc.weight")):
    pruner = PRUNERS.get("AutomatedGradualPruner")(name="agp", initial_sparsity=initial, final_sparsity=final,
                                                   weights=list(weights))
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(PruningPolicy(pruner, None), starting_epoch=start, ending_epoch=end, frequency=freq)
    return scheduler


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_agp_pruner_reaches_exact_target_at_each_epoch(schedule):
    torch.manual_seed(0)
    model = TinyNet()
    scheduler = agp_scheduler(model, *schedule)
    targets = closed_form_targets(*schedule)
    current = {name: 0.0 for name in ("conv1.weight", "conv2.weight", "fc.weight")}
    for epoch in range(schedule[3] + 2):
        scheduler.on_epoch_begin(epoch)
        for name, param in model.named_parameters():
            if name not in current:
                assert torch.count_nonzero(param) == param.numel(), f"{name} must not be pruned"
                continue
            if epoch in targets:
                current[name] = targets[epoch]
            assert int((param == 0).sum()) == math.floor(current[name] * param.numel() + 1e-9), (epoch, name)


def test_agp_regex_weights_are_resolved_by_the_policy():
    model = TinyNet()
    scheduler = agp_scheduler(model, 0.5, 0.75, 0, 3, 1, weights=[r"conv\d\.weight"])
    scheduler.on_epoch_begin(0)
    assert int((model.conv1.weight == 0).sum()) == math.floor(0.5 * model.conv1.weight.numel())
    assert int((model.conv2.weight == 0).sum()) == math.floor(0.5 * model.conv2.weight.numel())
    assert torch.count_nonzero(model.fc.weight) == model.fc.weight.numel()


def test_agp_custom_pruning_fn_receives_target():
    calls = []
    pruner = PRUNERS.get("AutomatedGradualPruner")(
        name="agp", initial_sparsity=0.1, final_sparsity=0.5, weights=["w"],
        pruning_fn=lambda param, name, masks, target, model: calls.append((name, target)))
    meta = {"starting_epoch": 0, "ending_epoch": 3, "frequency": 1, "current_epoch": 1, "model": None}
    pruner.set_param_mask(torch.ones(4), "w", {}, meta)
    assert calls == [("w", pytest.approx(0.5 + (0.1 - 0.5) * 0.5 ** 3))]


def test_agp_rate_scheduler_factory_sets_the_targets():
    class LinearRate:  # Distiller's rate-scheduler interface
        def __init__(self, initial_sparsity, final_sparsity):
            self.initial, self.final = initial_sparsity, final_sparsity

        def step(self, current_epoch, starting_epoch, ending_epoch, freq):
            return self.initial + (self.final - self.initial) * (current_epoch - starting_epoch) / (ending_epoch - 1)

    pruner = PRUNERS.get("AutomatedGradualPruner")("agp", 0.0, 0.5, ["w"], LinearRate)
    masks = {"w": types.SimpleNamespace(mask=None)}
    meta = {"starting_epoch": 0, "ending_epoch": 3, "frequency": 1, "current_epoch": 1, "model": None}
    pruner.set_param_mask(torch.arange(1.0, 9.0), "w", masks, meta)
    assert masks["w"].mask.tolist() == [0.0, 0.0] + [1.0] * 6  # linear: 0.25 of 8 elements at epoch 1
    default = AgpPruningRate(0.1, 0.5)
    assert default.step(1, 0, 3, 1) == pytest.approx(agp_target_sparsity(0.1, 0.5, 0, 3, 1, 1))


@pytest.mark.parametrize("kwargs, argument, message", [
    ({"rate_scheduler_factory": "AgpPruningRate"}, "rate_scheduler_factory",
     "argument 'rate_scheduler_factory' expects a callable, got 'AgpPruningRate'"),
    ({"initial_sparsity": 1.0, "final_sparsity": 0.5}, "initial_sparsity",
     r"argument 'initial_sparsity' expects a number in \[0, 1\), got 1.0"),
    ({"initial_sparsity": 0.1, "final_sparsity": 1.0}, "final_sparsity",
     r"argument 'final_sparsity' expects a number in \[0, 1\), got 1.0"),
    ({"initial_sparsity": "x", "final_sparsity": 0.2}, "initial_sparsity",
     r"argument 'initial_sparsity' expects a number in \[0, 1\), got 'x'"),
    ({"weights": []}, "weights", r"argument 'weights' expects a list of string, got \[\]"),
    ({"weights": None}, "weights", "argument 'weights' expects a list of string, got None"),
    ({"pruning_fn": "prune_level"}, "pruning_fn",
     "argument 'pruning_fn' expects a callable or None, got 'prune_level'"),
])
def test_agp_bad_argument_values_name_the_argument_expected_type_and_value(kwargs, argument, message):
    args = {"initial_sparsity": 0.05, "final_sparsity": 0.5, "weights": ["w"], **kwargs}
    with pytest.raises(ArgumentError, match=f"^AutomatedGradualPruner: {message}") as info:
        PRUNERS.get("AutomatedGradualPruner")(name="my_agp", **args)
    assert info.value.argument == argument


def test_agp_final_sparsity_below_initial_names_the_instance_and_argument():
    with pytest.raises(ArgumentError, match="^my_agp: final_sparsity=0.2 is below initial_sparsity") as info:
        PRUNERS.get("AutomatedGradualPruner")(name="my_agp", initial_sparsity=0.5, final_sparsity=0.2, weights=["w"])
    assert info.value.argument == "final_sparsity"


def test_agp_takes_a_single_weight_name_and_yaml_exponents():
    pruner = PRUNERS.get("AutomatedGradualPruner")(name="my_agp", initial_sparsity="5e-2", final_sparsity=0.5,
                                                   weights="fc.weight")
    assert (pruner.initial_sparsity, pruner.targets()) == (0.05, ["fc.weight"])


def test_agp_without_room_for_two_pruning_epochs_names_the_instance():
    pruner = PRUNERS.get("AutomatedGradualPruner")(name="my_agp", initial_sparsity=0.1, final_sparsity=0.5,
                                                   weights=["w"])
    meta = {"starting_epoch": 0, "ending_epoch": 2, "frequency": 2, "current_epoch": 0, "model": None}
    with pytest.raises(ValueError, match="my_agp: AGP needs at least two pruning epochs"):
        pruner.set_param_mask(torch.ones(4), "w", {}, meta)


def test_distiller_style_yaml_schedule_prunes_to_target():
    """A Distiller schedule (DataParallel ``module.`` names, YAML strings) loads unchanged."""
    schedule = """
version: 1
pruners:
  conv_pruner:
    class: AutomatedGradualPruner
    initial_sparsity: 0.05
    final_sparsity: 0.80
    weights: [module.conv1.weight, module.conv2.weight]
  fc_pruner:
    class: SparsityLevelParameterPruner
    levels:
      module.fc.weight: 0.5
policies:
  - pruner:
      instance_name: conv_pruner
    starting_epoch: 0
    ending_epoch: 30
    frequency: 2
  - pruner:
      instance_name: fc_pruner
    epochs: [0]
"""
    torch.manual_seed(0)
    model = TinyNet()
    scheduler = dict_config(model, None, yaml.safe_load(schedule))
    for epoch in range(30):
        scheduler.on_epoch_begin(epoch)
    assert int((model.conv2.weight == 0).sum()) == math.floor(0.8 * model.conv2.weight.numel())
    assert int((model.fc.weight == 0).sum()) == 80
