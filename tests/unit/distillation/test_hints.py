"""Hint (FitNets) distillation: adapters where channels differ, trained by the optimizer, saved and restored by
the policy; bad hints are refused naming the hint and the closest module names."""
import io

import pytest
import torch

import distiller
from distiller import KnowledgeDistillationPolicy
from distiller.apputils.checkpoint import POLICY_PARAM_GROUP
from distiller.distillation import Hint
from distiller.errors import ArgumentError, CheckpointError
from distiller.testing import TinyCNN

DUMMY = torch.zeros(1, 3, 32, 32)


def hinted(student, teacher, optimizer, hints=(Hint("relu1", "relu1", 1.0),), name="kd", **kwargs):
    return KnowledgeDistillationPolicy(student, teacher, hints=hints, optimizer=optimizer, dummy_input=DUMMY,
                                       name=name, **kwargs)


def test_an_adapter_maps_the_student_channels_to_the_teachers_and_joins_the_optimizer_once(student, teacher):
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    kd = hinted(student, teacher, optimizer, hints=[Hint("relu1", "relu1"), Hint("relu2", "conv2", 0.5)])
    adapters = kd.hint_layers.adapters
    assert list(adapters) == ["0", "1"]
    assert adapters["0"].weight.shape == (16, 8, 1, 1) and adapters["1"].weight.shape == (32, 16, 1, 1)
    group = optimizer.param_groups[-1]
    assert len(optimizer.param_groups) == 2 and group[POLICY_PARAM_GROUP] == "kd"
    assert group["params"] == list(adapters.parameters()) and (group["lr"], group["momentum"]) == (0.05, 0.9)
    with pytest.raises(ArgumentError, match="already trains the parameters of a policy named 'kd'"):
        hinted(student, teacher, optimizer)


def test_equal_channels_need_no_adapter(student):
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    kd = hinted(student, TinyCNN(), optimizer)
    assert len(kd.hint_layers.adapters) == 0 and len(optimizer.param_groups) == 1


def test_the_hint_loss_is_reported_and_the_adapter_learns(student, teacher, images):
    inputs, target = images[0]
    for param in student.parameters():
        param.requires_grad_(False)  # only the adapter learns: its loss must fall
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    kd = hinted(student, teacher, optimizer, loss_weights={"distill": 0.0, "student": 1.0})
    scheduler = distiller.CompressionScheduler(student)
    scheduler.add_policy(kd, epochs=[0])
    scheduler.on_epoch_begin(0)
    hint_losses = []
    for _ in range(5):
        student(inputs)
        result = scheduler.before_backward_pass(0, 0, 1, torch.tensor(0.0), return_loss_components=True)
        assert [c.name for c in result.loss_components][-1] == "Hint Loss (relu1 -> relu1)"
        hint_losses.append(result.loss_components[-1].value.item())
        optimizer.zero_grad()
        result.overall_loss.backward()
        optimizer.step()
    with torch.no_grad():
        student(inputs)
        expected = torch.nn.functional.mse_loss(kd.hint_layers.adapters["0"](student.relu1(student.bn1(
            student.conv1(inputs)))), teacher.relu1(teacher.bn1(teacher.conv1(inputs))))
    assert all(b < a for a, b in zip(hint_losses, hint_losses[1:])) and hint_losses[-1] < 0.9 * hint_losses[0], \
        hint_losses
    assert scheduler.before_backward_pass(0, 0, 1, torch.tensor(0.0)).item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_adapters_round_trip_through_the_policy_state(student, teacher):
    kd = hinted(student, teacher, torch.optim.SGD(student.parameters(), lr=0.1))
    with torch.no_grad():
        kd.hint_layers.adapters["0"].weight.add_(1.0)
    buffer = io.BytesIO()
    torch.save(kd.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = hinted(student, teacher, torch.optim.SGD(student.parameters(), lr=0.1))
    fresh.load_state_dict(state)
    assert torch.equal(fresh.hint_layers.adapters["0"].weight, kd.hint_layers.adapters["0"].weight)
    other = hinted(student, teacher, torch.optim.SGD(student.parameters(), lr=0.1), hints=[Hint("relu2", "relu2")])
    with pytest.raises(CheckpointError, match="do not fit"):
        other.load_state_dict(state)


@pytest.mark.parametrize("hint, match", [
    (Hint("relu_1", "relu1"), r"hints\[0\]: the student has no module 'relu_1'; did you mean 'relu1'"),
    (Hint("relu1", "layer1"), r"hints\[0\]: the teacher has no module 'layer1'"),
])
def test_bad_hints_are_refused_naming_the_hint(student, teacher, hint, match):
    with pytest.raises(ArgumentError, match=match) as caught:
        hinted(student, teacher, torch.optim.SGD(student.parameters(), lr=0.1), hints=[hint])
    assert caught.value.argument == "hints"


def test_hinted_outputs_of_other_resolutions_are_refused(student):
    class Strided(TinyCNN):
        def __init__(self):
            super().__init__(width=16)
            self.conv1.stride = (2, 2)
    with pytest.raises(ArgumentError, match=r"student's 'relu1' outputs \(1, 8, 32, 32\) and the teacher's 'relu1' "
                                            r"\(1, 16, 16, 16\).*same H and W"):
        hinted(student, Strided(), torch.optim.SGD(student.parameters(), lr=0.1))


def test_hints_need_an_example_input_and_the_optimizer(student, teacher):
    with pytest.raises(ArgumentError, match="hints need dummy_input and optimizer"):
        KnowledgeDistillationPolicy(student, teacher, hints=[Hint("relu1", "relu1")])
    with pytest.raises(ArgumentError, match="hints need optimizer"):
        KnowledgeDistillationPolicy(student, teacher, hints=[Hint("relu1", "relu1")], dummy_input=DUMMY)


def test_a_saved_adapter_group_that_does_not_fit_is_a_checkpoint_error(student, teacher):
    optimizer = torch.optim.SGD([{"params": list(student.parameters())},
                                 {"params": [torch.nn.Parameter(torch.empty(0))], POLICY_PARAM_GROUP: "kd"}],
                                lr=0.1, momentum=0.9)
    optimizer.state[optimizer.param_groups[1]["params"][0]] = {"momentum_buffer": torch.ones(4, 8, 1, 1)}
    with pytest.raises(CheckpointError, match=r"momentum_buffer of shape \(4, 8, 1, 1\).*shape \(16, 8, 1, 1\)"):
        hinted(student, teacher, optimizer)


def test_a_hinted_module_that_is_not_called_or_on_a_data_parallel_student_is_refused(student, teacher):
    class WithIdleModule(TinyCNN):
        def __init__(self):
            super().__init__()
            self.idle = torch.nn.ReLU()  # never called by forward
    with pytest.raises(ArgumentError, match=r"hints\[0\]: the student's module 'idle' was not called"):
        hinted(WithIdleModule(), teacher, torch.optim.SGD(student.parameters(), lr=0.1), hints=[Hint("idle", "relu1")])
    with pytest.raises(ArgumentError, match="hints need a student on one device"):
        hinted(torch.nn.DataParallel(student), teacher, torch.optim.SGD(student.parameters(), lr=0.1))
