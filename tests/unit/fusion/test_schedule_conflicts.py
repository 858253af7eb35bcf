"""Combinations a fused schedule refuses when it loads: a ScheduleError naming both instances, and the model
left as it was wherever the conflict is known before the quantizer prepares it; and the supported alternatives."""
import pytest
import torch

import distiller
import distiller.thinning
from distiller.errors import ScheduleError

DOREFA = {"class": "DorefaQuantizer", "bits_activations": 8, "bits_weights": 4}
PACT = {"class": "PACTQuantizer", "bits_activations": 8, "bits_weights": 4}
FOLD_BN = {"class": "QuantAwareTrainRangeLinearQuantizer", "bits_activations": 8, "bits_weights": 4, "fold_bn": True}


def _error(schedule, model, optimizer):
    modules_before = [(name, type(module)) for name, module in model.named_modules()]
    with pytest.raises(ScheduleError) as info:
        distiller.config.dict_config(model, optimizer, schedule)
    return str(info.value), modules_before == [(name, type(module)) for name, module in model.named_modules()]


@pytest.mark.parametrize("quantizer", [DOREFA, PACT], ids=["dorefa", "pact"])
def test_pruning_weights_whose_quantizer_has_no_zero_level_is_refused(quantizer, fused_schedule, model_and_optimizer):
    message, untouched = _error(fused_schedule(quantizer=quantizer), *model_and_optimizer())
    assert "at 'policies[0]'" in message and "pruner 'conv1_filters'" in message and "quantizer 'qat'" in message
    assert "'conv1.weight'" in message and "do not include 0" in message and "bits_weights: null" in message
    assert untouched


def test_a_dorefa_quantizer_may_keep_the_pruned_layers_in_float(fused_schedule, model_and_optimizer,
                                                                fusion_batches):
    quantizer = dict(DOREFA, overrides={"conv1": {"bits_weights": None}, "conv2": {"bits_weights": None}})
    model, optimizer = model_and_optimizer()
    scheduler = distiller.config.dict_config(model, optimizer, fused_schedule(quantizer=quantizer))
    distiller.testing.train_with_scheduler(model, optimizer, scheduler, fusion_batches, epochs=2)
    assert int((model.conv1.weight.flatten(1).abs().amax(dim=1) == 0).sum()) == 4
    assert model.fc.weight.unique().numel() <= 16 and "fc.float_weight" in dict(model.named_parameters())


def test_thresholding_regularizer_with_dorefa_is_refused(fused_schedule, model_and_optimizer):
    schedule = fused_schedule(order=("fc_l1", "qat"), quantizer=DOREFA)
    schedule["regularizers"]["fc_l1"]["threshold_criteria"] = "Mean_Abs"
    message, untouched = _error(schedule, *model_and_optimizer())
    assert "regularizer 'fc_l1' (L1Regularizer) zeroes weights that quantizer 'qat'" in message and untouched
    schedule["regularizers"]["fc_l1"].pop("threshold_criteria")  # the loss term alone zeroes nothing
    assert distiller.config.dict_config(*model_and_optimizer(), schedule).model_transforms


FLOAT_CONV_DOREFA = dict(DOREFA, overrides={"conv1": {"bits_weights": None}, "conv2": {"bits_weights": None}})


@pytest.mark.parametrize("thinner", ["FilterRemover", "ChannelRemover", "StructureRemover"])
@pytest.mark.parametrize("quantizer, reason", [(FLOAT_CONV_DOREFA, "levels that do not include 0"),
                                               (FOLD_BN, "fold_bn")], ids=["dorefa", "fold_bn"])
def test_thinning_with_a_quantizer_it_cannot_follow_is_refused(thinner, quantizer, reason, fused_schedule,
                                                               model_and_optimizer):
    schedule = fused_schedule(quantizer=quantizer)
    schedule["extensions"] = {"thinner": {"class": thinner}}
    schedule["policies"].append({"extension": {"instance_name": "thinner"}, "epochs": [1]})
    message, untouched = _error(schedule, *model_and_optimizer())
    assert f"at 'policies[5]': extension 'thinner' ({thinner}) thins the model" in message
    assert f"quantizer 'qat' ({quantizer['class']})" in message and reason in message
    assert "--exp-load-weights-from" in message and untouched


@pytest.mark.parametrize("quantizer", [FLOAT_CONV_DOREFA, FOLD_BN], ids=["dorefa", "fold_bn"])
def test_graph_dependency_with_a_quantizer_it_cannot_follow_is_refused(quantizer, fused_schedule,
                                                                       model_and_optimizer):
    schedule = fused_schedule(quantizer=quantizer)
    schedule["pruners"]["conv1_filters"].update(group_dependency="Graph", dataset="cifar10")
    message, untouched = _error(schedule, *model_and_optimizer())
    assert "pruner 'conv1_filters' (L1RankedStructureParameterPruner_AGP) uses group_dependency: Graph" in message
    assert f"quantizer 'qat' ({quantizer['class']})" in message and untouched


@pytest.mark.parametrize("order, index", [(("conv2_elements", "qat"), 0), (("qat", "conv2_elements"), 1)],
                         ids=["pruner_first", "quantizer_first"])
def test_pruning_weights_that_fold_bn_moves_is_refused(order, index, fused_schedule, model_and_optimizer):
    model, optimizer = model_and_optimizer()
    with pytest.raises(ScheduleError) as info:
        distiller.config.dict_config(model, optimizer, fused_schedule(order=order, quantizer=FOLD_BN))
    message = str(info.value)
    assert f"at 'policies[{index}]': pruner 'conv2_elements' (AutomatedGradualPruner) acts on 'conv2.weight'" in message
    assert "quantizer 'qat' (QuantAwareTrainRangeLinearQuantizer) moved" in message and "fold_bn" in message


def test_schedules_without_a_quantizer_keep_thinning_and_graph_pruning(fused_schedule, model_and_optimizer):
    schedule = fused_schedule(order=("conv1_filters", "conv2_elements", "fc_l1", "lr"))
    schedule["pruners"]["conv1_filters"].update(group_dependency="Graph", dataset="cifar10")
    schedule["extensions"] = {"thinner": {"class": "FilterRemover"}}
    schedule["policies"].append({"extension": {"instance_name": "thinner"}, "epochs": [1]})
    del schedule["quantizers"]
    scheduler = distiller.config.dict_config(*model_and_optimizer(), schedule)
    assert len(scheduler.policies[1]) == 5


def test_quantization_after_thinning_takes_its_ranges_from_the_thinned_weights(fused_schedule, model_and_optimizer,
                                                                                fusion_batches):
    """The supported order: thin first, then a schedule with the quantizer (nothing to fix by hand)."""
    model, optimizer = model_and_optimizer()
    scheduler = distiller.CompressionScheduler(model)
    for name in ("conv1.weight", "bn1.weight", "bn1.bias"):
        mask = torch.ones_like(model.get_parameter(name))
        mask[:3] = 0
        scheduler.zeros_mask_dict[name].mask = mask
    scheduler.mask_all_weights()
    distiller.thinning.remove_filters(model, scheduler.zeros_mask_dict, optimizer=optimizer,
                                      dummy_input=fusion_batches[0][0], scheduler=scheduler)
    quantizer = dict(fused_schedule()["quantizers"]["qat"], per_channel_wts=True)
    scheduler = distiller.config.dict_config(model, optimizer, fused_schedule(order=("qat",), quantizer=quantizer),
                                             scheduler)
    distiller.testing.train_with_scheduler(model, optimizer, scheduler, fusion_batches, epochs=1)
    assert model.conv1.weight.shape[0] == 5 and model.conv1.weight_scale.shape == (5, 1, 1, 1)
    assert max(row.unique().numel() for row in model.conv1.weight) <= 16
    assert [t["kind"] for t in scheduler.model_transforms] == ["thinning", "quantization"]
