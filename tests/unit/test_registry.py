"""Every registered class is built from YAML, scheduled on a tiny model and shown to have its effect.

Pruners, regularizers and quantizers run for two epochs; learning-rate schedulers are compared with their
closed forms; thinning extensions must remove the structures a pruner zeroed. Parametrised over the
registries: registering a new class without adding an example here fails.
"""
import math

import pytest
import torch

import distiller
from distiller import registry
from distiller.testing import TinyCNN, train_with_scheduler
from distiller.thinning import StructureRemover  # other extensions are tested in their own files

CONVS = ["conv1.weight", "conv2.weight"]
RANKED = {"group_type": "Filters", "desired_sparsity": 0.5, "weights": CONVS}
RANKED_AGP = {"group_type": "Filters", "initial_sparsity": 0.1, "final_sparsity": 0.5, "weights": CONVS}
REG_REGIMS = {"conv1.weight": [0.01, "Filters"], "conv2.weight": [0.01, "Channels"]}

EXAMPLES = {
    "pruners": {
        "AutomatedGradualPruner": {"initial_sparsity": 0.1, "final_sparsity": 0.5, "weights": CONVS},
        "MagnitudeParameterPruner": {"thresholds": {"*": 0.05}},
        "SparsityLevelParameterPruner": {"levels": {"conv1.weight": 0.5, "fc.weight": 0.3}},
        "SensitivityPruner": {"sensitivities": {"conv2.weight": 0.5, "fc.weight": 0.3}},
        "SplicingPruner": {"sensitivities": {"conv2.weight": 0.5}, "low_thresh_mult": 0.9, "hi_thresh_mult": 1.1},
        "BaiduRNNPruner": {"q": 1, "ramp_epoch_offset": 0, "ramp_slope_mult": 2, "weights": ["fc.weight"]},
        "L1RankedStructureParameterPruner": RANKED,
        "L2RankedStructureParameterPruner": dict(RANKED, group_type="Channels"),
        "GradientRankedFilterPruner": RANKED,
        "RandomRankedFilterPruner": RANKED,
        "BernoulliFilterPruner": RANKED,
        "ActivationAPoZRankedFilterPruner": RANKED,
        "ActivationMeanRankedFilterPruner": RANKED,
        "RandomLevelStructureParameterPruner": {"group_type": "Filters", "sparsity_range": [0.1, 0.5],
                                                "weights": CONVS},
        "FMReconstructionChannelPruner": {"group_type": "Channels", "desired_sparsity": 0.5,
                                          "weights": ["conv2.weight"]},
        "StructureParameterPruner": {"reg_regims": {"conv2.weight": [0.3, "Filters"]}, "threshold_criteria": "Max"},
        "L1RankedStructureParameterPruner_AGP": RANKED_AGP,
        "L2RankedStructureParameterPruner_AGP": RANKED_AGP,
        "GradientRankedFilterPruner_AGP": RANKED_AGP,
        "RandomRankedFilterPruner_AGP": RANKED_AGP,
        "BernoulliFilterPruner_AGP": RANKED_AGP,
        "ActivationAPoZRankedFilterPruner_AGP": RANKED_AGP,
        "ActivationMeanRankedFilterPruner_AGP": RANKED_AGP,
        "StructuredAGP": dict(RANKED_AGP, importance="Taylor", group_dependency="Graph"),
    },
    "regularizers": {
        "L1Regularizer": {"reg_regims": {"conv1.weight": 0.01, "fc.weight": 0.01}},
        "GroupLassoRegularizer": {"reg_regims": REG_REGIMS},
        "GroupVarianceRegularizer": {"reg_regims": REG_REGIMS},
        "DropFilterRegularizer": {"reg_regims": {"conv2.weight": 0.3}},
    },
    "quantizers": {
        "QuantAwareTrainRangeLinearQuantizer": {"bits_activations": 8, "bits_weights": 4, "mode": "ASYMMETRIC_UNSIGNED"},
        "DorefaQuantizer": {"bits_activations": 8, "bits_weights": 4},
        "PACTQuantizer": {"bits_activations": 8, "bits_weights": 4},
        "WRPNQuantizer": {"bits_activations": 8, "bits_weights": 4},
        "PostTrainLinearQuantizer": {"bits_activations": 8, "bits_parameters": 8, "mode": "ASYMMETRIC_UNSIGNED"},
    },
}

BASE_LR = 0.1


def _one_cycle_warmup(k: int) -> float:
    """OneCycleLR (Smith & Topin 2018) in its first phase: cosine from max_lr / 25 up to max_lr over 2 steps."""
    start, end = 0.1 / 25, 0.1
    return end + (start - end) * (1 + math.cos(math.pi * k / 2)) / 2


def _triangular(k: int) -> float:
    """CyclicLR's triangular policy (Smith 2017, Cyclical Learning Rates) with step size 1 between 0.01 and 0.1."""
    cycle = math.floor(1 + k / 2)
    return 0.01 + (0.1 - 0.01) * max(0.0, 1 - abs(k - 2 * cycle + 1))


# YAML arguments and the learning rate after k scheduler steps, written from each scheduler's definition
# (not computed by the scheduler), for an optimizer whose initial learning rate is BASE_LR.
LR_CLOSED_FORMS = {
    "ConstantLR": ({"factor": 0.5, "total_iters": 1}, lambda k: BASE_LR * (0.5 if k < 1 else 1.0)),
    "CosineAnnealingLR": ({"T_max": 2}, lambda k: BASE_LR * (1 + math.cos(math.pi * k / 2)) / 2),
    "CosineAnnealingWarmRestarts": ({"T_0": 2}, lambda k: BASE_LR * (1 + math.cos(math.pi * (k % 2) / 2)) / 2),
    "CyclicLR": ({"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 1}, _triangular),
    "ExponentialLR": ({"gamma": 0.5}, lambda k: BASE_LR * 0.5 ** k),
    "LinearLR": ({"start_factor": 0.5, "total_iters": 2}, lambda k: BASE_LR * (0.5 + 0.5 * min(k, 2) / 2)),
    "MultiStepLR": ({"milestones": [2], "gamma": 0.5}, lambda k: BASE_LR * (0.5 if k >= 2 else 1.0)),
    "MultiStepMultiGammaLR": ({"milestones": [1, 2], "gammas": [0.5, 0.2]},
                              lambda k: BASE_LR * (0.5 if k >= 1 else 1.0) * (0.2 if k >= 2 else 1.0)),
    "OneCycleLR": ({"max_lr": 0.1, "total_steps": 10}, _one_cycle_warmup),
    "PolynomialLR": ({"T_max": 4, "power": 2}, lambda k: BASE_LR * (1 - k / 4) ** 2),
    # fed a constant metric: the first step sets the best value, every later one is a plateau
    "ReduceLROnPlateau": ({"mode": "max", "patience": 0, "factor": 0.5}, lambda k: BASE_LR * 0.5 ** max(0, k - 1)),
    "StepLR": ({"step_size": 2, "gamma": 0.5}, lambda k: BASE_LR * 0.5 ** (k // 2)),
}

# Each thinning function and the structures a pruner must zero first for it to have something to remove.
THINNING_PRUNERS = {"remove_filters": "Filters", "remove_channels": "Channels"}
EXTENSIONS = {
    "FilterRemover": {"thinning_func_str": "remove_filters"},
    "ChannelRemover": {"thinning_func_str": "remove_channels"},
    "StructureRemover": {"thinning_func_str": "remove_filters"},
}

POLICY_KEY = {"pruners": "pruner", "regularizers": "regularizer", "quantizers": "quantizer"}
REGISTERED = [(section, name) for section, names in registry.list_classes().items() if section in POLICY_KEY
              for name in names]


@pytest.mark.parametrize("section, class_name", REGISTERED, ids=[f"{s}:{n}" for s, n in REGISTERED])
def test_registered_class_builds_from_yaml_and_runs(section, class_name, batches):
    assert class_name in EXAMPLES[section], f"add a YAML example for {class_name} to EXAMPLES['{section}']"
    torch.manual_seed(0)
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = {"version": 1,
             section: {"instance": dict({"class": class_name}, **EXAMPLES[section][class_name])},
             "policies": [{POLICY_KEY[section]: {"instance_name": "instance"}, "epochs": [1, 2]}]}
    modules_before = {name: type(module) for name, module in model.named_modules()}
    if class_name == "PostTrainLinearQuantizer":  # inference only: a training schedule is refused up front
        with pytest.raises(distiller.ScheduleError, match="cannot be trained"):
            distiller.config.dict_config(model, optimizer, sched)
        return
    scheduler = distiller.config.dict_config(model, optimizer, sched)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=3)

    policy = scheduler.policies[1][0]
    if section == "pruners":
        masks = [scheduler.zeros_mask_dict[name].mask for name in policy.param_names]
        assert all(mask is not None for mask in masks), "pruner set no mask"
    elif section == "regularizers" and class_name == "DropFilterRegularizer":
        # DropFilter adds no loss term: it zeroes random filters' outputs during training forward passes.
        outputs = []
        model.conv2.register_forward_hook(lambda module, inputs, output: outputs.append(output))
        model.train()
        scheduler.on_minibatch_begin(1, 0, 1, optimizer)
        model(batches[0][0])
        assert (outputs[-1].abs().sum(dim=(0, 2, 3)) == 0).any(), "no filter was dropped"
    elif section == "regularizers":
        loss = scheduler.before_backward_pass(1, 0, 1, torch.tensor(0.0), return_loss_components=True)
        assert float(loss.loss_components[0].value) > 0, "regularizer added no loss"
    else:
        assert {name: type(module) for name, module in model.named_modules()} != modules_before, \
            "quantizer replaced no module"
    assert torch.isfinite(model(batches[0][0])).all()


@pytest.mark.parametrize("class_name", registry.list_classes()["lr_schedulers"])
def test_lr_scheduler_follows_its_definition_at_the_scheduled_epochs(class_name):
    assert class_name in LR_CLOSED_FORMS, f"add YAML arguments and the closed form of {class_name} to LR_CLOSED_FORMS"
    args, lr_after = LR_CLOSED_FORMS[class_name]
    expected = [lr_after(0), lr_after(0), lr_after(1), lr_after(2), lr_after(2)]
    assert len(set(expected)) > 1, "the example arguments must make the learning rate change"
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=BASE_LR, momentum=0.9)
    scheduler = distiller.config.dict_config(model, optimizer, {
        "version": 1, "lr_schedulers": {"lr": dict({"class": class_name}, **args)},
        "policies": [{"lr_scheduler": {"instance_name": "lr"}, "epochs": [1, 2]}]})
    lrs = [optimizer.param_groups[0]["lr"]]
    for epoch in range(4):  # the scheduler steps at the end of epochs 1 and 2 only
        scheduler.on_epoch_begin(epoch, optimizer)
        optimizer.step()  # no gradients: changes nothing, but keeps torch's step-order check quiet
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": 1.0, "max": 50.0})
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("class_name", [name for name in registry.list_classes()["extensions"]
                                        if issubclass(registry.EXTENSIONS.get(name), StructureRemover)])
def test_extension_removes_the_structures_a_pruner_zeroed(class_name, batches):
    assert class_name in EXTENSIONS, f"add a YAML example for {class_name} to EXTENSIONS"
    args = EXTENSIONS[class_name]
    torch.manual_seed(0)
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = distiller.config.dict_config(model, optimizer, {
        "version": 1,
        "pruners": {"half": {"class": "L1RankedStructureParameterPruner", "desired_sparsity": 0.5,
                             "group_type": THINNING_PRUNERS[args["thinning_func_str"]], "weights": ["conv2.weight"]}},
        "extensions": {"thin": dict({"class": class_name}, **args)},
        "policies": [{"pruner": {"instance_name": "half"}, "epochs": [0]},
                     {"extension": {"instance_name": "thin"}, "epochs": [1]}]})
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=1)
    assert (model.conv2.weight.shape, model.conv1.weight.shape) == ((16, 8, 3, 3), (8, 3, 3, 3)), \
        "the extension thinned before its epoch"
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=2, start_epoch=1)
    if args["thinning_func_str"] == "remove_filters":  # conv2's zero filters go, with their BN and fc inputs
        assert model.conv2.weight.shape == (8, 8, 3, 3)
        assert (model.bn2.num_features, model.fc.in_features) == (8, 8)
        assert (model.conv2.weight.abs().sum(dim=(1, 2, 3)) > 0).all(), "a kept filter is a zeroed one"
    else:  # conv2's zero input channels go, and with them the conv1 filters (and BN) that fed them
        assert model.conv2.weight.shape == (16, 4, 3, 3)
        assert (model.conv1.weight.shape[0], model.bn1.num_features) == (4, 4)
        assert (model.conv2.weight.abs().sum(dim=(0, 2, 3)) > 0).all(), "a kept channel is a zeroed one"
    assert model(batches[0][0]).shape == (8, 10)
