"""YAML schedules: loading Distiller's format, and a clear ScheduleError for every bad input."""
import textwrap

import pytest
import torch
import yaml

import distiller
from distiller.registry import PRUNERS, register_pruner
from distiller.testing import TinyCNN, train_with_scheduler

AGP_SCHEDULE = """\
version: 1
pruners:
  conv_pruner:
    class: 'AutomatedGradualPruner'
    initial_sparsity : 0.05
    final_sparsity: 0.80
    weights: [conv1.weight, 'conv2\\.weight']
  fc_pruner:
    class: AutomatedGradualPruner
    initial_sparsity : 0.05
    final_sparsity: 0.70
    weights: fc.weight

lr_schedulers:
  pruning_lr:
    class: ExponentialLR
    gamma: 0.9

policies:
  - pruner:
      instance_name : 'conv_pruner'
    starting_epoch: 0
    ending_epoch: 4
    frequency: 1

  - pruner:
      instance_name : 'fc_pruner'
      args:
        keep_mask: true
    epochs: [0, 2, 4]

  - lr_scheduler:
      instance_name: pruning_lr
    starting_epoch: 0
    ending_epoch: 6
    frequency: 1
"""


def _write(tmp_path, text, name="schedule.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def test_user_loop_reaches_requested_sparsity_exactly(tmp_path, batches):
    model = TinyCNN()
    optimizer = _optimizer(model)
    scheduler = distiller.file_config(model, optimizer, _write(tmp_path, AGP_SCHEDULE))
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=6)
    for name, target in (("conv1.weight", 0.80), ("conv2.weight", 0.80), ("fc.weight", 0.70)):
        weight = dict(model.named_parameters())[name]
        expected_zeros = int(target * weight.numel())  # the level pruner never overshoots
        assert int((weight == 0).sum()) == expected_zeros, name
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.9 ** 6)


def test_describe_schedule_lists_the_plan_without_touching_the_model(tmp_path):
    model = TinyCNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = distiller.describe_schedule(model, _write(tmp_path, AGP_SCHEDULE))
    assert list(plan[plan.instance == "conv_pruner"].parameter) == ["conv1.weight", "conv2.weight"]
    assert plan[plan.instance == "fc_pruner"].epochs.iloc[0] == "0, 2, 4"
    assert plan[plan.instance == "conv_pruner"].epochs.iloc[0] == "0..3 every 1"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _schedule_error(tmp_path, text):
    model = TinyCNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(distiller.ScheduleError) as info:
        distiller.file_config(model, _optimizer(model), _write(tmp_path, text))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "model changed"
    return str(info.value)


PRUNER = """\
pruners:
  p:
    class: AutomatedGradualPruner
    initial_sparsity: 0.05
    final_sparsity: {final}
    weights: [conv1.weight, {weight}]
policies:
  - pruner: {{instance_name: {instance}}}
    {epochs}
"""


def _pruner(final=0.8, weight="conv2.weight", instance="p", epochs="starting_epoch: 0\n    ending_epoch: 3"):
    return PRUNER.format(final=final, weight=weight, instance=instance, epochs=epochs)


@pytest.mark.parametrize("text, expected", [
    (_pruner(weight="conv3.weight"),
     ["pruners.p.weights[1]", "line 6", "'conv3.weight' matches no parameter", "8 parameters exist",
      "did you mean 'conv2.weight'"]),
    (_pruner(weight="'layer.*'"), ["pruners.p.weights[1]", "'layer.*' matches no parameter"]),
    (_pruner().replace("AutomatedGradualPruner", "AutomatedGradualPrunner"),
     ["pruners.p.class", "unknown pruners class 'AutomatedGradualPrunner'", "did you mean 'AutomatedGradualPruner'"]),
    (_pruner().replace("final_sparsity", "final_sparsty"),
     ["pruners.p.final_sparsty", "has no argument 'final_sparsty'", "did you mean 'final_sparsity'"]),
    (_pruner().replace("    final_sparsity: 0.8\n", ""), ["pruners.p", "missing a required argument: 'final_sparsity'"]),
    (_pruner(final=1.5), ["pruners.p.final_sparsity", "line 5", "expects a number in [0, 1), got 1.5"]),
    (_pruner(instance="q"), ["policies[0].pruner.instance_name", "instance 'q' is not defined"]),
    (_pruner(epochs="epochs: [0, 1]\n    starting_epoch: 0"), ["policies[0]", "either 'epochs' or starting_epoch"]),
    (_pruner(epochs="starting_epoch: 3\n    ending_epoch: 3"), ["policies[0].ending_epoch", "must be greater"]),
    ("pruners: [1, 2]\n", ["'pruners' must be a mapping"]),
    ("- just\n- a list\n", ["a schedule must be a mapping"]),
    ("pruners:\n  p: {class: X\n", ["malformed YAML", "line 3"]),
    ("prunners: {}\n", ["unknown section 'prunners'", "did you mean 'pruners'"]),
    (_pruner(instance="p, args: {keep_mask: true, keep_masks: 1}"),
     ["policies[0].pruner.args.keep_masks", "unknown argument 'keep_masks'", "did you mean 'keep_mask'"]),
    (_pruner(instance="p, args: {levels: {conv1.weight: 1.2}}"),
         ["policies[0].pruner.args.levels.conv1.weight", "expects a number in [0, 1)", "got 1.2"]),
    (_pruner() + "    args: {keep_mask: true}\n", ["policies[0].args", "unknown policy key 'args'"]),
])
def test_bad_schedules_raise_schedule_error(tmp_path, text, expected):
    message = _schedule_error(tmp_path, text)
    assert "schedule.yaml" in message
    for fragment in expected:
        assert fragment in message


def test_missing_schedule_file_is_a_schedule_error(tmp_path):
    model = TinyCNN()
    with pytest.raises(distiller.ScheduleError, match="schedule file not found"):
        distiller.file_config(model, _optimizer(model), str(tmp_path / "nope.yaml"))


def test_schedule_error_is_a_value_error():
    assert issubclass(distiller.ScheduleError, ValueError)


def test_dict_config_validates_too():
    model = TinyCNN()
    bad = {"pruners": {"p": {"class": "SparsityLevelParameterPruner", "levels": {"conv9.weight": 0.5}}}}
    with pytest.raises(distiller.ScheduleError, match=r"pruners\.p\.levels\.conv9\.weight"):
        distiller.config.dict_config(model, _optimizer(model), bad)


def test_user_registered_class_loads_from_yaml(tmp_path, batches):
    @register_pruner
    class HalfOfFirstFilterPruner(distiller.pruning.ParameterPruner):
        def __init__(self, name, weights):
            super().__init__(name)
            self.weights = weights

        def targets(self):
            return self.weights

        def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
            mask = torch.ones_like(param)
            mask[0] = 0
            zeros_mask_dict[param_name].mask = mask

    try:
        model = TinyCNN()
        optimizer = _optimizer(model)
        text = ("pruners:\n  mine: {class: HalfOfFirstFilterPruner, weights: [conv1.weight]}\n"
                "policies:\n  - pruner: {instance_name: mine}\n    epochs: [0]\n")
        scheduler = distiller.file_config(model, optimizer, _write(tmp_path, text))
        train_with_scheduler(model, optimizer, scheduler, batches, epochs=1)
        assert model.conv1.weight[0].abs().sum() == 0 and model.conv1.weight[1:].abs().sum() > 0
    finally:
        PRUNERS.unregister("HalfOfFirstFilterPruner")


def test_reduce_lr_on_plateau_is_fed_from_epoch_metrics(batches):
    model = TinyCNN()
    optimizer = _optimizer(model)
    sched = {"lr_schedulers": {"plateau": {"class": "ReduceLROnPlateau", "mode": "max", "patience": 0,
                                           "factor": 0.5}},
             "policies": [{"lr_scheduler": {"instance_name": "plateau"}, "starting_epoch": 0, "ending_epoch": 5}]}
    scheduler = distiller.config.dict_config(model, optimizer, sched)
    for epoch, top1 in enumerate([50.0, 40.0, 40.0]):
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": 1.0, "max": top1})
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.025)


@pytest.mark.parametrize("text", ["", "version: 1\n", "policies: []\n", "pruners: {}\npolicies:\n"])
def test_empty_schedule_is_refused(tmp_path, text):
    message = _schedule_error(tmp_path, text)
    assert "schedule.yaml" in message and "the schedule is empty" in message and "add 'policies'" in message


def test_empty_schedule_dict_is_refused():
    model = TinyCNN()
    for sched in ({}, None):
        with pytest.raises(distiller.ScheduleError, match="the schedule is empty"):
            distiller.config.dict_config(model, _optimizer(model), sched)


def test_sections_without_policies_are_refused(tmp_path):
    text = _pruner().split("policies:")[0] + "lr_schedulers:\n  decay: {class: ExponentialLR, gamma: 0.9}\n"
    message = _schedule_error(tmp_path, text)
    assert "defines pruners.p, lr_schedulers.decay but no policies" in message
    assert "add a 'policies' list" in message


def test_two_quantizers_are_refused_naming_both(tmp_path):
    text = """\
    quantizers:
      linear: {class: QuantAwareTrainRangeLinearQuantizer, bits_activations: 8, bits_weights: 8}
      dorefa: {class: DorefaQuantizer, bits_activations: 8, bits_weights: 4}
    policies:
      - quantizer: {instance_name: linear}
        starting_epoch: 0
        ending_epoch: 5
      - quantizer: {instance_name: dorefa}
        starting_epoch: 0
        ending_epoch: 5
    """
    model = TinyCNN()
    modules_before = [type(m) for m in model.modules()]
    message = _schedule_error(tmp_path, text)
    assert "defines 2 quantizers ('linear', 'dorefa')" in message and "keep one of them" in message
    assert "quantizers.dorefa" in message and "line 3" in message
    assert [type(m) for m in model.modules()] == modules_before


@pytest.fixture
def registered_pruner():
    """Registers a pruner class under a test name; yields the name and unregisters it afterwards."""
    names = []

    def register(cls):
        register_pruner(cls)
        names.append(cls.__name__)
        return cls.__name__
    yield register
    for name in names:
        PRUNERS.unregister(name)


def _one_pruner_schedule(class_name):
    return {"pruners": {"p": {"class": class_name, "weights": ["conv1.weight"]}},
            "policies": [{"pruner": {"instance_name": "p"}, "epochs": [0]}]}


@pytest.mark.parametrize("bug", [RuntimeError("boom"), ValueError("boom"), KeyError("boom"), TypeError("boom")])
def test_a_bug_in_a_constructor_is_not_turned_into_a_schedule_error(registered_pruner, bug):
    class BuggyPruner:
        def __init__(self, name, weights):
            raise bug

    model = TinyCNN()
    with pytest.raises(type(bug)) as info:
        distiller.config.dict_config(model, _optimizer(model), _one_pruner_schedule(registered_pruner(BuggyPruner)))
    assert info.value is bug  # unchanged, with its traceback


def test_a_constructor_input_check_becomes_a_schedule_error_with_the_yaml_path(registered_pruner):
    class PickyPruner:
        def __init__(self, name, weights):
            raise distiller.errors.ArgumentError(f"{name}: weights must name biases")

    model = TinyCNN()
    with pytest.raises(distiller.ScheduleError, match=r"at 'pruners\.p'.*PickyPruner: p: weights must name biases"):
        distiller.config.dict_config(model, _optimizer(model), _one_pruner_schedule(registered_pruner(PickyPruner)))


def test_a_bug_while_adding_a_policy_propagates(monkeypatch):
    def broken_attach(self, scheduler):
        raise ValueError("boom")
    monkeypatch.setattr(distiller.policy.PruningPolicy, "attach", broken_attach)
    model = TinyCNN()
    with pytest.raises(ValueError, match="^boom$") as info:
        distiller.config.dict_config(model, _optimizer(model), yaml.safe_load(AGP_SCHEDULE))
    assert not isinstance(info.value, distiller.ScheduleError)
