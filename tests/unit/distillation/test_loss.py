"""The combined loss: Hinton et al.'s soft-target term computed by hand, its weights and the named components
the scheduler reports; bad weights and temperatures are refused with the argument named."""
import pytest
import torch
import torch.nn.functional as F

import distiller
from distiller import DistillationLossWeights, KnowledgeDistillationPolicy
from distiller.distillation import soft_target_loss
from distiller.errors import ArgumentError


def test_soft_target_loss_is_t_squared_times_the_batch_mean_kl_divergence():
    student = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    teacher = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    t = 3.0
    p_teacher = torch.softmax(teacher / t, dim=1)
    by_hand = (p_teacher * (p_teacher.log() - torch.log_softmax(student / t, dim=1))).sum() / 2 * t * t
    assert soft_target_loss(student, teacher, t).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert soft_target_loss(student, teacher, t).item() == pytest.approx(
        (F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1), reduction="batchmean") * t * t).item())
    assert soft_target_loss(teacher, teacher, t).item() == pytest.approx(0.0, abs=1e-6)


def test_the_scheduler_returns_the_weighted_sum_with_named_components(student, teacher, images):
    inputs, target = images[0]
    kd = KnowledgeDistillationPolicy(student, teacher, temperature=2.0,
                                     loss_weights=DistillationLossWeights(0.7, 0.3, 0.0))
    scheduler = distiller.CompressionScheduler(student)
    scheduler.add_policy(kd, starting_epoch=0, ending_epoch=1)
    scheduler.on_epoch_begin(0)
    output = student(inputs)
    loss = F.cross_entropy(output, target)
    result = scheduler.before_backward_pass(0, 0, 1, loss, return_loss_components=True)
    with torch.no_grad():
        expected_kd = F.kl_div(F.log_softmax(output / 2, 1), F.softmax(teacher(inputs) / 2, 1),
                               reduction="batchmean") * 4
    assert [c.name for c in result.loss_components] == ["Student Loss", "Distillation Loss"]
    assert result.loss_components[0].value.item() == pytest.approx(0.3 * loss.item(), rel=1e-6)
    assert result.loss_components[1].value.item() == pytest.approx(0.7 * expected_kd.item(), rel=1e-5)
    assert result.overall_loss.item() == pytest.approx(0.3 * loss.item() + 0.7 * expected_kd.item(), rel=1e-5)
    result.overall_loss.backward()
    assert student.fc.weight.grad is not None and all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("weights, match", [
    (DistillationLossWeights(0.5, 0.5, 0.1), r"loss_weights\.teacher is 0\.1.*set it to 0"),
    (DistillationLossWeights(0.0, 0.0, 0.0), "loss_weights are all 0"),
    (DistillationLossWeights(-0.5, 0.5, 0.0), r"'loss_weights\['distill'\]'.*greater than or equal to 0"),
    ({"distill": 0.5, "studnet": 0.5}, r"'loss_weights\['student'\]'.*'studnet'.*field required"),
])
def test_bad_loss_weights_are_refused_naming_the_argument(student, teacher, weights, match):
    with pytest.raises(ArgumentError, match=match) as caught:
        KnowledgeDistillationPolicy(student, teacher, loss_weights=weights)
    assert caught.value.argument == "loss_weights"


@pytest.mark.parametrize("temperature", [0.0, -1.0, "hot"])
def test_a_temperature_must_be_a_positive_number(student, teacher, temperature):
    with pytest.raises(ArgumentError, match="'temperature'"):
        KnowledgeDistillationPolicy(student, teacher, temperature=temperature)
