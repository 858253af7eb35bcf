"""When the teacher runs: once per training forward pass of the student in the policy's epochs, in eval mode and
without gradients; never in evaluation, never outside those epochs; and nothing is left on the student."""
import pytest
import torch

import distiller
from distiller import KnowledgeDistillationPolicy
from distiller.errors import ArgumentError
from distiller.testing import TinyCNN, train_with_scheduler


def count_calls(model):
    calls = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(module.training))
    return calls


def scheduled(student, teacher, epochs):
    kd = KnowledgeDistillationPolicy(student, teacher, temperature=2.0)
    scheduler = distiller.CompressionScheduler(student)
    scheduler.add_policy(kd, epochs=epochs)
    return kd, scheduler


def test_the_teacher_runs_once_per_training_step_of_its_epochs_in_eval_mode_without_gradients(student, teacher,
                                                                                                 images):
    calls = count_calls(teacher)
    kd, scheduler = scheduled(student, teacher, epochs=[1])
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    train_with_scheduler(student, optimizer, scheduler, images, epochs=1)
    assert calls == [], "the teacher ran outside the policy's epochs"
    train_with_scheduler(student, optimizer, scheduler, images, epochs=1, start_epoch=1)
    assert calls == [False] * len(images), "the teacher must run once per step, in eval mode"
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in teacher_before.items())  # BN stats too


def test_inactive_epochs_leave_the_loss_unchanged(student, teacher, images):
    _, scheduler = scheduled(student, teacher, epochs=[1])
    loss = torch.tensor(1.5)
    scheduler.on_epoch_begin(0)
    student(images[0][0])
    assert scheduler.before_backward_pass(0, 0, 1, loss, return_loss_components=True) == (loss, [])


def test_evaluation_does_not_run_the_teacher(student, teacher, images):
    calls = count_calls(teacher)
    _, scheduler = scheduled(student, teacher, epochs=[0])
    scheduler.on_epoch_begin(0)
    student.eval()
    with torch.no_grad():
        student(images[0][0])
    assert calls == []
    student.train()
    student(images[0][0])
    assert len(calls) == 1


def test_forward_and_the_hook_run_the_teacher_once(student, teacher, images):
    calls = count_calls(teacher)
    kd, scheduler = scheduled(student, teacher, epochs=[0])
    assert torch.equal(kd.forward(images[0][0]), student(images[0][0])) and calls == [], "inactive: student only"
    scheduler.on_epoch_begin(0)
    assert kd.active
    output = kd.forward(images[0][0])
    assert len(calls) == 1
    loss = scheduler.before_backward_pass(0, 0, 1, torch.nn.functional.cross_entropy(output, images[0][1]))
    assert loss.requires_grad


def test_hooks_go_when_the_epoch_ends_or_on_remove_and_nothing_stays_on_the_student(student, teacher, images):
    attributes, keys = set(vars(student)), set(student.state_dict())
    kd, scheduler = scheduled(student, teacher, epochs=[0])
    scheduler.on_epoch_begin(0)
    assert student._forward_hooks
    scheduler.on_epoch_end(0)
    assert not student._forward_hooks and not kd.active
    scheduler.on_epoch_begin(0)
    kd.remove()
    assert not student._forward_hooks and not any(m._forward_hooks for m in teacher.modules())
    assert set(vars(student)) == attributes and set(student.state_dict()) == keys


def test_a_backward_pass_without_a_training_forward_pass_is_a_clear_error(student, teacher):
    _, scheduler = scheduled(student, teacher, epochs=[0])
    scheduler.on_epoch_begin(0)
    with pytest.raises(RuntimeError, match="no training-mode forward pass of the student"):
        scheduler.before_backward_pass(0, 0, 1, torch.tensor(1.0))


def test_outputs_of_different_shapes_are_refused_naming_both_models(student, images):
    teacher = TinyCNN(num_classes=5)
    with pytest.raises(ArgumentError, match=r"teacher \(TinyCNN\) outputs shape \(1, 5\) but the student "
                                            r"\(TinyCNN\) \(1, 10\)"):
        KnowledgeDistillationPolicy(student, teacher, dummy_input=torch.zeros(1, 3, 32, 32))
    _, scheduler = scheduled(student, teacher, epochs=[0])  # no example input: found on the first batch
    scheduler.on_epoch_begin(0)
    with pytest.raises(ArgumentError, match=r"outputs shape \(8, 5\) but the student \(TinyCNN\) \(8, 10\)"):
        student(images[0][0])


def test_the_probe_leaves_the_student_in_its_mode_with_its_statistics(student, teacher):
    stats = student.bn1.running_mean.clone()
    KnowledgeDistillationPolicy(student, teacher, dummy_input=torch.randn(2, 3, 32, 32))
    assert student.training and torch.equal(student.bn1.running_mean, stats)


class _WithLogits(torch.nn.Module):
    """Returns its model's logits in an object's ``logits`` field, as Hugging Face models do."""

    def __init__(self, model, field="logits"):
        super().__init__()
        self.model, self.field = model, field

    def forward(self, x):
        return type("Output", (), {self.field: self.model(x)})()


def test_outputs_with_a_logits_field_are_distilled_on_those_logits(student, teacher, images):
    kd, scheduler = scheduled(_WithLogits(student), _WithLogits(teacher), epochs=[0])
    scheduler.on_epoch_begin(0)
    inputs, _ = images[0]
    logits = kd.student(inputs).logits
    total = scheduler.before_backward_pass(0, 0, 1, torch.tensor(0.0), return_loss_components=True)
    expected = distiller.distillation.loss.soft_target_loss(logits, teacher.eval()(inputs), 2.0)
    torch.testing.assert_close(total.loss_components[1].value, 0.5 * expected)
    with pytest.raises(ArgumentError, match="returns a Output; .*'logits' tensor"):
        KnowledgeDistillationPolicy(_WithLogits(student, "scores"), teacher, dummy_input=inputs[:1])
