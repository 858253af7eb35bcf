"""The schedule stored in a checkpoint resumes without the schedule file; a different file is refused."""
import copy

import pytest
import torch
import yaml

import distiller
from distiller.apputils import load_checkpoint, resume_schedule, save_checkpoint
from distiller.errors import CheckpointError
from distiller.testing import TinyCNN, train_with_scheduler

SCHEDULE_YAML = """\
# AGP to 70% over 4 epochs, and a decaying learning rate
version: 1
pruners:
  agp:
    class: AutomatedGradualPruner
    initial_sparsity: 0.1
    final_sparsity: 0.7
    weights: [conv1.weight, conv2.weight, fc.weight]
lr_schedulers:
  lr: {class: StepLR, step_size: 1, gamma: 0.7}
policies:
  - pruner: {instance_name: agp}
    starting_epoch: 0
    ending_epoch: 4
  - lr_scheduler: {instance_name: lr}
    starting_epoch: 0
    ending_epoch: 6
"""
REGULARIZATION = {"regularizers": {"l1": {"class": "L1Regularizer", "reg_regims": {"fc.weight": 1e-3},
                                          "threshold_criteria": "Mean_Abs"}},
                  "policies": [{"regularizer": {"instance_name": "l1"}, "starting_epoch": 0, "ending_epoch": 6}]}


def _setup(seed=0):
    torch.manual_seed(seed)
    model = TinyCNN()
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


@pytest.fixture
def schedule_file(tmp_path):
    path = tmp_path / "agp.yaml"
    path.write_text(SCHEDULE_YAML)
    return str(path)


def _interrupted(schedule_file, batches, tmp_path, epochs=3, extra=None):
    """Trains ``epochs`` epochs, saves, and returns the checkpoint path."""
    model, optimizer = _setup()
    scheduler = distiller.file_config(model, optimizer, schedule_file)
    if extra is not None:
        distiller.config.dict_config(model, optimizer, extra, scheduler)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=epochs)
    return save_checkpoint(epochs - 1, "tiny", model, optimizer, scheduler, dir=str(tmp_path))


def _uninterrupted(schedule_file, batches, extra=None):
    model, optimizer = _setup()
    scheduler = distiller.file_config(model, optimizer, schedule_file)
    if extra is not None:
        distiller.config.dict_config(model, optimizer, extra, scheduler)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=6)
    return model, optimizer


def _resume(path, batches, schedule_file=None):
    fresh, _ = _setup(seed=123)  # different init: everything must come from the checkpoint
    fresh, scheduler, optimizer, start_epoch = load_checkpoint(fresh, path)
    scheduler = resume_schedule(fresh, optimizer, scheduler, start_epoch - 1, schedule_file, path)
    train_with_scheduler(fresh, optimizer, scheduler, batches, epochs=6 - start_epoch, start_epoch=start_epoch)
    return fresh, optimizer, scheduler


def _assert_same(model, optimizer, other, other_optimizer):
    for (name, expected), actual in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(expected, actual), name
    assert other_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_checkpoint_stores_the_schedule_text_as_plain_data(schedule_file, batches, tmp_path):
    path = _interrupted(schedule_file, batches, tmp_path, epochs=1)
    stored = torch.load(path, weights_only=True)["compression_sched"]["schedule_yaml"]
    assert stored == SCHEDULE_YAML  # the file's text, comments included


def test_resume_without_the_schedule_file_continues_agp_and_lr_exactly(schedule_file, batches, tmp_path):
    expected_model, expected_optimizer = _uninterrupted(schedule_file, batches)
    path = _interrupted(schedule_file, batches, tmp_path)
    model, optimizer, scheduler = _resume(path, batches)
    _assert_same(expected_model, expected_optimizer, model, optimizer)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.7 ** 6)
    assert scheduler.schedule_yaml == SCHEDULE_YAML  # stays stored for the next checkpoint
    sparsity = 1 - torch.count_nonzero(model.conv2.weight).item() / model.conv2.weight.numel()
    assert sparsity == pytest.approx(0.7, abs=0.01)  # AGP reached its final level after the resume


def test_resume_with_the_same_schedule_differently_written_is_accepted(schedule_file, batches, tmp_path):
    expected_model, expected_optimizer = _uninterrupted(schedule_file, batches)
    path = _interrupted(schedule_file, batches, tmp_path)
    rewritten = tmp_path / "same.yaml"
    rewritten.write_text(yaml.safe_dump(yaml.safe_load(SCHEDULE_YAML), default_flow_style=True))
    model, optimizer, _ = _resume(path, batches, str(rewritten))
    _assert_same(expected_model, expected_optimizer, model, optimizer)


def test_resume_with_another_schedule_names_what_differs(schedule_file, batches, tmp_path):
    path = _interrupted(schedule_file, batches, tmp_path, epochs=1)
    other = yaml.safe_load(SCHEDULE_YAML)
    other["pruners"]["agp"]["final_sparsity"] = 0.8
    other["policies"][1]["ending_epoch"] = 9
    other["pruners"]["agp"]["group_type"] = "Filters"
    changed = tmp_path / "other.yaml"
    changed.write_text(yaml.safe_dump(other))
    fresh, _ = _setup()
    fresh, scheduler, optimizer, start_epoch = load_checkpoint(fresh, path)
    with pytest.raises(CheckpointError) as info:
        resume_schedule(fresh, optimizer, scheduler, start_epoch - 1, str(changed), path)
    message = str(info.value)
    assert f"the schedule '{changed}' differs from the one stored in '{path}'" in message
    assert "pruners.agp.final_sparsity: 0.7 in the checkpoint, 0.8 in the file" in message
    assert "pruners.agp.group_type: absent in the checkpoint, Filters in the file" in message
    assert "policies[1].ending_epoch: 6 in the checkpoint, 9 in the file" in message
    assert "drop the schedule file (--compress)" in message and "--exp-load-weights-from" in message
    assert not scheduler.policies  # nothing was added


def test_several_schedules_on_one_scheduler_resume_in_order(schedule_file, batches, tmp_path):
    expected_model, expected_optimizer = _uninterrupted(schedule_file, batches, REGULARIZATION)
    path = _interrupted(schedule_file, batches, tmp_path, extra=REGULARIZATION)
    documents = list(yaml.safe_load_all(torch.load(path, weights_only=True)["compression_sched"]["schedule_yaml"]))
    assert documents == [yaml.safe_load(SCHEDULE_YAML), REGULARIZATION]
    model, optimizer, scheduler = _resume(path, batches)
    _assert_same(expected_model, expected_optimizer, model, optimizer)
    assert [p["class"] for p in scheduler.state_dict()["policies"].values()] == ["PruningPolicy", "LRPolicy",
                                                                                "RegularizationPolicy"]


def test_policy_states_without_a_schedule_are_not_dropped_silently(batches, tmp_path):
    model, optimizer = _setup()
    scheduler = distiller.CompressionScheduler(model)
    lr = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    scheduler.add_policy(distiller.LRPolicy(lr), starting_epoch=0, ending_epoch=4)  # not from a schedule
    path = save_checkpoint(0, "tiny", model, optimizer, scheduler, dir=str(tmp_path))
    fresh, loaded, fresh_optimizer, start_epoch = load_checkpoint(TinyCNN(), path)
    with pytest.raises(CheckpointError, match=r"does not schedule: 'LRPolicy' \(LRPolicy\); it has no schedule "
                                              r"stored"):
        resume_schedule(fresh, fresh_optimizer, loaded, start_epoch - 1, chkpt_file=path)


def test_a_policy_added_beside_the_stored_schedule_must_be_added_again(schedule_file, batches, tmp_path):
    """E.g. knowledge distillation added by app flags: resuming without it would continue half the run."""
    model, optimizer = _setup()
    scheduler = distiller.file_config(model, optimizer, schedule_file)
    lr = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    scheduler.add_policy(distiller.LRPolicy(lr), starting_epoch=0, ending_epoch=4, name="by_flags")
    path = save_checkpoint(0, "tiny", model, optimizer, scheduler, dir=str(tmp_path))
    fresh, loaded, fresh_optimizer, start_epoch = load_checkpoint(TinyCNN(), path)
    with pytest.raises(CheckpointError, match=r"does not schedule: 'by_flags' \(LRPolicy\); they are not in its "
                                              r"stored schedule"):
        resume_schedule(fresh, fresh_optimizer, loaded, start_epoch - 1, chkpt_file=path)
    fresh, loaded, fresh_optimizer, start_epoch = load_checkpoint(TinyCNN(), path)
    again = torch.optim.lr_scheduler.StepLR(fresh_optimizer, step_size=1)
    loaded.add_policy(distiller.LRPolicy(again), starting_epoch=0, ending_epoch=4, name="by_flags")
    assert resume_schedule(fresh, fresh_optimizer, loaded, start_epoch - 1, chkpt_file=path).unclaimed_policy_states == {}


def test_unclaimed_policy_states_survive_a_save_before_the_schedule_is_resumed(schedule_file, batches, tmp_path):
    path = _interrupted(schedule_file, batches, tmp_path, epochs=2)
    fresh, loaded, optimizer, _ = load_checkpoint(TinyCNN(), path)
    again = save_checkpoint(1, "tiny", fresh, optimizer, loaded, dir=str(tmp_path), name="again")
    original = torch.load(path, weights_only=True)["compression_sched"]
    resaved = torch.load(again, weights_only=True)["compression_sched"]
    assert [p["class"] for p in resaved["policies"].values()] == ["PruningPolicy", "LRPolicy"]
    assert list(resaved["policies"]) == list(original["policies"])
    assert all(resaved["policies"][name]["state"] == original["policies"][name]["state"] for name in original["policies"])
    assert resaved["schedule_yaml"] == SCHEDULE_YAML


def test_dict_config_stores_its_schedule():
    model, optimizer = _setup()
    scheduler = distiller.config.dict_config(model, optimizer, copy.deepcopy(REGULARIZATION))
    assert yaml.safe_load(scheduler.schedule_yaml) == REGULARIZATION
