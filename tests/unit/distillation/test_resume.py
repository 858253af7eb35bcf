"""A run with trained hint adapters saves a checkpoint and resumes from it exactly: load_checkpoint rebuilds
the optimizer with the adapters' group, the schedule stored in the checkpoint rebuilds the policy, which takes
that group over (with its momentum) and restores the adapters' weights."""
import copy

import torch

import distiller
from distiller.apputils import load_checkpoint, resume_schedule, save_checkpoint
from distiller.registry import DISTILLERS
from distiller.testing import TinyCNN, train_with_scheduler


def _schedule():
    example = DISTILLERS.example("KnowledgeDistillation")
    return {"version": 1, "distillers": {"kd": {"class": "KnowledgeDistillation", **example}},
            "lr_schedulers": {"decay": {"class": "ExponentialLR", "gamma": 0.5}},
            "policies": [{"distiller": {"instance_name": "kd"}, "starting_epoch": 0, "ending_epoch": 2},
                         {"lr_scheduler": {"instance_name": "decay"}, "starting_epoch": 0, "ending_epoch": 2}]}


def _start(schedule):
    torch.manual_seed(0)
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, distiller.config.dict_config(model, optimizer, schedule)


def test_a_checkpoint_with_hint_adapters_resumes_exactly(teacher_checkpoint, images, tmp_path):
    model, optimizer, scheduler = _start(_schedule())
    train_with_scheduler(model, optimizer, scheduler, images, epochs=1)
    path = save_checkpoint(0, "tiny", model, optimizer, scheduler, dir=str(tmp_path))
    train_with_scheduler(model, optimizer, scheduler, images, epochs=1, start_epoch=1)
    expected_adapters = scheduler.state_dict()["policies"]["kd"]["state"]["adapters"]

    resumed, loaded, rebuilt, start_epoch = load_checkpoint(TinyCNN(), path)
    scheduler = resume_schedule(resumed, rebuilt, loaded, start_epoch - 1)
    policy = scheduler.policies[1][0]
    assert [len(group["params"]) for group in rebuilt.param_groups] == [8, 1]
    assert rebuilt.param_groups[1]["params"][0] is next(policy.hint_layers.adapters.parameters())
    before = copy.deepcopy(rebuilt.state[rebuilt.param_groups[1]["params"][0]]["momentum_buffer"])
    assert before.abs().sum() > 0, "the adapter's momentum was not restored"
    train_with_scheduler(resumed, rebuilt, scheduler, images, epochs=1, start_epoch=start_epoch)
    for name, tensor in model.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name
    for name, tensor in expected_adapters.items():
        assert torch.equal(policy.hint_layers.state_dict()[name], tensor), name
