"""Post-training quantization and knowledge distillation of transformer encoders."""
import pytest
import torch

import distiller
from distiller.errors import ArgumentError
from distiller.quantization import PostTrainLinearQuantizer
from distiller.testing import TinyTransformer, train_with_scheduler
from distiller.transformers import DistillerMultiheadAttention, prune_attention_heads


def test_ptq_quantizes_every_encoder_linear_and_stays_close(tiny_transformer, images):
    model = tiny_transformer.eval()
    prune_attention_heads(model, {"encoder.layers.1.self_attn": [0]})   # a thinned layer quantizes as well
    with torch.no_grad():
        expected = model(images)
    PostTrainLinearQuantizer(model).prepare_model(images[:1])
    wrapped = {name for name, module in model.named_modules() if hasattr(module, "wrapped_module")}
    for layer in ("encoder.layers.0", "encoder.layers.1"):
        assert {f"{layer}.self_attn.in_proj", f"{layer}.self_attn.out_proj", f"{layer}.linear1",
                f"{layer}.linear2"} <= wrapped
    with torch.no_grad():
        actual = model(images)
    assert not torch.equal(actual, expected)
    assert (actual - expected).abs().max() < 0.05 * expected.abs().max()


def test_ptq_refuses_torch_attention_naming_the_layer_and_the_fix(images):
    model = TinyTransformer().eval()
    with pytest.raises(ArgumentError, match="'encoder.layers.0.self_attn' is a torch.nn.MultiheadAttention.*"
                                            "convert_attention"):
        PostTrainLinearQuantizer(model).prepare_model(images[:1])
    assert not any(hasattr(module, "wrapped_module") for module in model.modules())


def test_a_head_pruned_student_learns_from_its_dense_teacher(tiny_transformer, batches):
    teacher = tiny_transformer
    torch.manual_seed(3)
    student = TinyTransformer()
    distiller.transformers.convert_attention(student)
    prune_attention_heads(student, {f"encoder.layers.{i}.self_attn": [0, 1] for i in range(2)})
    assert isinstance(student.encoder.layers[0].self_attn, DistillerMultiheadAttention)
    kd = distiller.KnowledgeDistillationPolicy(student, teacher, temperature=2.0,
                                               loss_weights={"distill": 0.7, "student": 0.3, "teacher": 0.0})
    scheduler = distiller.CompressionScheduler(student)
    scheduler.add_policy(kd, epochs=[0])
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    scheduler.on_epoch_begin(0, optimizer)
    inputs, target = batches[0]
    loss = torch.nn.functional.cross_entropy(student(inputs), target)
    total = scheduler.before_backward_pass(0, 0, 1, loss, optimizer, return_loss_components=True)
    assert [c.name for c in total.loss_components] == ["Student Loss", "Distillation Loss"]
    assert float(total.overall_loss.detach()) != pytest.approx(float(loss.detach()))
    assert torch.isfinite(train_with_scheduler(student, optimizer, scheduler, batches, epochs=1))
