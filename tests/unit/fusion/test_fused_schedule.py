"""Pruners, a regularizer and a quantization-aware-training quantizer in one schedule (fusion compression):
pruning acts on the float copies, pruned weights stay exactly zero after quantization, in either policy order."""
import pytest
import torch

import distiller
from distiller.testing import train_with_scheduler

ORDERS = {"pruners_first": ("conv1_filters", "conv2_elements", "fc_l1", "qat", "lr"),
          "quantizer_first": ("qat", "lr", "fc_l1", "conv2_elements", "conv1_filters")}


@pytest.mark.parametrize("order", list(ORDERS))
def test_pruned_weights_are_exactly_zero_before_and_after_quantization(order, fused_schedule, model_and_optimizer,
                                                                        fusion_batches):
    schedule = fused_schedule(ORDERS[order])
    model, optimizer = model_and_optimizer()
    scheduler = distiller.config.dict_config(model, optimizer, schedule)
    train_with_scheduler(model, optimizer, scheduler, fusion_batches, epochs=2)

    masks = {name: masker.mask for name, masker in scheduler.zeros_mask_dict.items() if masker.mask is not None}
    assert set(masks) == {"conv1.float_weight", "conv2.float_weight"}  # the masks live on the float copies
    # AGP reaches its final sparsity at the last scheduled epoch: 4 of conv1's 8 filters, 60% of conv2.
    filters_kept = masks["conv1.float_weight"].flatten(1).amax(dim=1)
    assert int((filters_kept == 0).sum()) == 4
    assert float((masks["conv2.float_weight"] == 0).float().mean()) == pytest.approx(0.6, abs=1 / 1152)
    model.eval()
    model(fusion_batches[0][0])  # the quantized weights as evaluation and checkpoints see them
    bits = schedule["quantizers"]["qat"]["bits_weights"]
    for name in ("conv1", "conv2"):
        layer, pruned = model.get_submodule(name), masks[f"{name}.float_weight"] == 0
        assert torch.all(layer.float_weight[pruned] == 0) and torch.all(layer.weight[pruned] == 0)
        assert torch.count_nonzero(layer.weight[~pruned]) > 0
        assert layer.weight.unique().numel() <= 2 ** bits  # per-tensor 4-bit weights: at most 16 values


def test_mask_dict_answers_the_quantized_weight_name_with_its_float_copy(fused_schedule, model_and_optimizer):
    model, optimizer = model_and_optimizer()
    scheduler = distiller.config.dict_config(model, optimizer, fused_schedule())
    masks = scheduler.zeros_mask_dict
    assert masks["conv2.weight"] is masks["conv2.float_weight"]
    assert "conv2.weight" not in masks and "conv2.weight" not in list(masks)  # keys are the parameters' names
    assert [n for n, _ in distiller.masking.named_scheduled_parameters(model)] == \
        [n.replace("float_", "") for n, _ in model.named_parameters()]


def test_regularization_term_is_reported_and_computed_on_the_float_copy(fused_schedule, model_and_optimizer,
                                                                        fusion_batches):
    schedule = fused_schedule()
    model, optimizer = model_and_optimizer()
    scheduler = distiller.config.dict_config(model, optimizer, schedule)
    train_with_scheduler(model, optimizer, scheduler, fusion_batches, epochs=1)
    x, y = fusion_batches[0]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    result = scheduler.before_backward_pass(1, 0, 3, loss, optimizer, return_loss_components=True)
    components = {component.name: component.value.item() for component in result.loss_components}
    assert list(components) == ["L1Regularizer_loss"]
    strength = schedule["regularizers"]["fc_l1"]["reg_regims"]["fc.weight"]
    expected = strength * model.fc.float_weight.abs().sum().item()
    assert components["L1Regularizer_loss"] == pytest.approx(expected, rel=1e-6)
    assert expected != pytest.approx(strength * model.fc.weight.abs().sum().item(), rel=1e-6)  # not the quantized
    assert result.overall_loss.item() == pytest.approx(loss.item() + expected, rel=1e-6)
    result.overall_loss.backward()  # the term's gradient reaches the trained float copy
    assert model.fc.float_weight.grad is not None


def test_policies_run_in_the_schedules_order_at_every_callback(model_and_optimizer, fusion_batches):
    """The order of ``policies`` in the YAML decides the order of the callbacks, whatever the sections and the
    policies' first epochs."""
    calls = []

    class Recorder(distiller.ScheduledTrainingPolicy):
        """Records its callbacks."""

        def __init__(self, label: str) -> None:
            super().__init__()
            self.label = label

        def on_epoch_begin(self, model, zeros_mask_dict, meta, **kwargs):
            calls.append(("on_epoch_begin", meta["current_epoch"], self.label))

        def on_minibatch_end(self, model, epoch, minibatch_id, minibatches_per_epoch, zeros_mask_dict, optimizer):
            calls.append(("on_minibatch_end", epoch, self.label))

        def on_epoch_end(self, model, zeros_mask_dict, meta, **kwargs):
            calls.append(("on_epoch_end", meta["current_epoch"], self.label))

    registry = distiller.registry.EXTENSIONS
    registry.register(Recorder, name="FusionOrderRecorder")
    try:
        schedule = {"extensions": {label: {"class": "FusionOrderRecorder", "label": label} for label in "abc"},
                    "policies": [{"extension": {"instance_name": "c"}, "starting_epoch": 1, "ending_epoch": 2},
                                 {"extension": {"instance_name": "a"}, "starting_epoch": 0, "ending_epoch": 2},
                                 {"extension": {"instance_name": "b"}, "epochs": [0, 1]}]}
        model, optimizer = model_and_optimizer()
        scheduler = distiller.config.dict_config(model, optimizer, schedule)
        train_with_scheduler(model, optimizer, scheduler, fusion_batches[:1], epochs=2)
    finally:
        registry.unregister("FusionOrderRecorder")
    for callback in ("on_epoch_begin", "on_minibatch_end", "on_epoch_end"):
        assert [label for name, epoch, label in calls if name == callback and epoch == 0] == ["a", "b"]
        assert [label for name, epoch, label in calls if name == callback and epoch == 1] == ["c", "a", "b"]


def test_drop_filter_regularizer_trains_and_resumes_with_a_quantizer(fused_schedule, model_and_optimizer,
                                                                     fusion_batches):
    schedule = fused_schedule(order=("qat",))
    schedule["regularizers"] = {"drop": {"class": "DropFilterRegularizer", "reg_regims": {"conv2.weight": 0.5}}}
    schedule["policies"].insert(0, {"regularizer": {"instance_name": "drop"}, "starting_epoch": 0, "ending_epoch": 2})
    model, optimizer = model_and_optimizer()
    scheduler = distiller.config.dict_config(model, optimizer, schedule)
    dropped = []
    model.bn2.register_forward_pre_hook(lambda module, args: dropped.append(int((args[0].abs().sum((0, 2, 3)) == 0)
                                                                                .sum())))
    train_with_scheduler(model, optimizer, scheduler, fusion_batches, epochs=1)
    assert len(dropped) == 3 and sum(dropped) > 0  # whole filters of conv2 dropped in training
    resumed = distiller.config.dict_config(model, optimizer, schedule, distiller.CompressionScheduler(model))
    assert len(resumed.policies[0]) == 2  # built again on the quantized model, as a resumed run does
