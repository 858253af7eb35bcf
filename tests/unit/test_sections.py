"""Schedule sections as data: a section registered from outside the library loads and runs; policy state
is saved and restored by instance name; the transform log has one writer."""
import pytest
import torch

import distiller
from distiller.errors import ArgumentError, ScheduleError
from distiller.policy import ScheduledTrainingPolicy
from distiller.registry import SECTIONS, Registry, Section, register_section
from distiller.spec import Real, validated
from distiller.testing import TinyCNN, train_with_scheduler

CLIPPERS = Registry("weight_clippers")


class WeightClipper:
    """Clamps weights to [-max_abs, max_abs] after each step (a stand-in for any user algorithm).

    YAML::

        clip:
          class: WeightClipper
          max_abs: 0.0625
    """

    @validated
    def __init__(self, name: str, max_abs: Real) -> None:
        self.name, self.max_abs, self.steps = name, max_abs, 0


class ClipPolicy(ScheduledTrainingPolicy):
    def __init__(self, clipper):
        super().__init__()
        self.clipper = clipper

    def on_minibatch_end(self, model, epoch, minibatch_id, minibatches_per_epoch, zeros_mask_dict, optimizer):
        self.clipper.steps += 1
        with torch.no_grad():
            for param in model.parameters():
                param.clamp_(-self.clipper.max_abs, self.clipper.max_abs)

    def state_dict(self):
        return {"steps": self.clipper.steps}

    def load_state_dict(self, state):
        self.clipper.steps = state["steps"]


@pytest.fixture
def clipper_section():
    CLIPPERS.register(WeightClipper)
    section = register_section(Section("weight_clippers", "weight_clipper", CLIPPERS,
                                       lambda clipper, args: ClipPolicy(clipper)))
    yield section
    del SECTIONS["weight_clippers"]
    CLIPPERS.unregister("WeightClipper")


def _schedule(max_abs=0.0625):
    return {"weight_clippers": {"clip": {"class": "WeightClipper", "max_abs": max_abs}},
            "policies": [{"weight_clipper": {"instance_name": "clip"}, "epochs": [1]}]}


def test_a_section_registered_outside_the_library_loads_and_runs(clipper_section, batches):
    torch.manual_seed(0)
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = distiller.config.dict_config(model, optimizer, _schedule())
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=1)  # epoch 0: not scheduled
    assert max(p.abs().max().item() for p in model.parameters()) > 0.0625
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=1, start_epoch=1)
    assert max(p.abs().max().item() for p in model.parameters()) <= 0.0625  # exact in float32
    assert distiller.registry.list_classes("weight_clippers") == ["WeightClipper"]
    assert CLIPPERS.example("WeightClipper") == {"max_abs": 0.0625}


def test_the_new_section_gets_the_same_checks_as_built_in_ones(clipper_section):
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ScheduleError, match=r"at 'weight_clippers\.clip\.max_abs'.*expects a number, got 'big'"):
        distiller.config.dict_config(model, optimizer, _schedule("big"))
    bad_policy = dict(_schedule(), policies=[{"weight_clipper": {"instance_name": "clip", "args": {"x": 1}},
                                              "epochs": [0]}])
    with pytest.raises(ScheduleError, match=r"weight_clipper.args.x.*unknown weight_clipper argument 'x'"):
        distiller.config.dict_config(model, optimizer, bad_policy)
    with pytest.raises(ArgumentError, match="expects a number, got 'big'"):  # the Python API: the same check
        WeightClipper("clip", "big")


def test_policy_state_is_restored_by_instance_name_and_a_class_mismatch_is_an_error(clipper_section, batches):
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = _schedule()
    schedule["lr_schedulers"] = {"lr": {"class": "StepLR", "step_size": 1}}
    schedule["policies"] = [{"lr_scheduler": {"instance_name": "lr"}, "epochs": [0]}] + schedule["policies"]
    scheduler = distiller.config.dict_config(model, optimizer, schedule)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=2)
    state = scheduler.state_dict()
    assert set(state["policies"]) == {"lr", "clip"} and state["policies"]["clip"]["state"]["steps"] == len(batches)

    # Restored by name, whatever the order the policies are added in.
    model2 = TinyCNN()
    optimizer2 = torch.optim.SGD(model2.parameters(), lr=0.1)
    reordered = dict(schedule, policies=list(reversed(schedule["policies"])))
    resumed = distiller.CompressionScheduler(model2)
    resumed.load_state_dict(state)
    distiller.config.dict_config(model2, optimizer2, reordered, scheduler=resumed)
    assert resumed.state_dict()["policies"]["clip"]["state"]["steps"] == len(batches)

    # The same name now holding another kind of policy.
    swapped = {name: dict(saved, **{"class": "LRPolicy"}) if name == "clip" else saved
               for name, saved in state["policies"].items()}
    clash = distiller.CompressionScheduler(TinyCNN())
    clash.load_state_dict(dict(state, policies=swapped))
    with pytest.raises(distiller.UserError, match="policy 'clip' belongs to a LRPolicy, but the schedule's 'clip' is a "
                                              "ClipPolicy"):
        distiller.config.dict_config(clash.model, torch.optim.SGD(clash.model.parameters(), lr=0.1), schedule,
                                     scheduler=clash)


def test_the_transform_log_is_written_only_through_record_transform():
    scheduler = distiller.CompressionScheduler(TinyCNN())
    scheduler.record_transform("thinning", {"modules": {}})
    scheduler.model_transforms.append({"kind": "bogus"})  # a copy: the log is unchanged
    assert scheduler.model_transforms == [{"kind": "thinning", "modules": {}}]
    with pytest.raises(AttributeError):
        scheduler.model_transforms = []
    scheduler.record_transform("thinning", {"modules": {}})  # an identical record (a resumed schedule)
    assert len(scheduler.model_transforms) == 1


def test_mask_changes_are_counted_per_mask_dict_not_globally():
    first, second = distiller.CompressionScheduler(TinyCNN()), distiller.CompressionScheduler(TinyCNN())
    before = second.zeros_mask_dict.version
    first.zeros_mask_dict["conv1.weight"].mask = torch.ones(8, 3, 3, 3)
    assert second.zeros_mask_dict.version == before
    version = first.zeros_mask_dict.version
    first.zeros_mask_dict["conv1.weight"].mask = None
    assert first.zeros_mask_dict.version > version


def test_python_api_epochs_get_the_schedule_checks():
    scheduler = distiller.CompressionScheduler(TinyCNN())
    with pytest.raises(ArgumentError, match=r"ending_epoch \(3\) must be greater than starting_epoch \(3\)"):
        scheduler.add_policy(ScheduledTrainingPolicy(), starting_epoch=3, ending_epoch=3)
    with pytest.raises(ArgumentError, match="'frequency' expects an integer > 0, got 0"):
        scheduler.add_policy(ScheduledTrainingPolicy(), starting_epoch=0, ending_epoch=3, frequency=0)
