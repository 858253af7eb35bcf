"""Every registered class is built from YAML and run for two epochs on a tiny model.

Parametrised over the registries: registering a new class without adding an example here fails.
"""
import pytest
import torch

import distiller
from distiller import registry
from distiller.testing import TinyCNN, train_with_scheduler

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
        "BaiduRNNPruner": {"q_skip": 1, "ramp_epoch_offset": 0, "ramp_slope_mult": 2, "weights": ["fc.weight"]},
        "L1RankedStructureParameterPruner": RANKED,
        "L2RankedStructureParameterPruner": dict(RANKED, group_type="Channels"),
        "GradientRankedFilterPruner": RANKED,
        "RandomRankedFilterPruner": RANKED,
        "BernoulliFilterPruner": RANKED,
        "ActivationAPoZRankedFilterPruner": RANKED,
        "ActivationMeanRankedFilterPruner": RANKED,
        "RandomLevelStructureParameterPruner": {"group_type": "Filters", "sparsity_range": [0.1, 0.5],
                                                "weights": CONVS},
        "FMReconstructionChannelPruner": {"desired_sparsity": 0.5, "weights": ["conv2.weight"]},
        "StructureParameterPruner": {"reg_regims": {"conv2.weight": [0.3, "Filters"]}, "threshold_criteria": "Max"},
        "L1RankedStructureParameterPruner_AGP": RANKED_AGP,
        "L2RankedStructureParameterPruner_AGP": RANKED_AGP,
        "GradientRankedFilterPruner_AGP": RANKED_AGP,
        "RandomRankedFilterPruner_AGP": RANKED_AGP,
        "BernoulliFilterPruner_AGP": RANKED_AGP,
        "ActivationAPoZRankedFilterPruner_AGP": RANKED_AGP,
        "ActivationMeanRankedFilterPruner_AGP": RANKED_AGP,
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
    "lr_schedulers": {
        "ConstantLR": {"factor": 0.5, "total_iters": 1},
        "CosineAnnealingLR": {"T_max": 2},
        "CosineAnnealingWarmRestarts": {"T_0": 1},
        "CyclicLR": {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 1},
        "ExponentialLR": {"gamma": 0.5},
        "LinearLR": {"start_factor": 0.5, "total_iters": 1},
        "MultiStepLR": {"milestones": [1], "gamma": 0.5},
        "MultiStepMultiGammaLR": {"milestones": [1], "gammas": [0.5]},
        "OneCycleLR": {"max_lr": 0.1, "total_steps": 10},
        "PolynomialLR": {"T_max": 4, "power": 2},
        "ReduceLROnPlateau": {"mode": "max", "patience": 0, "factor": 0.5},
        "StepLR": {"step_size": 1, "gamma": 0.5},
    },
    "extensions": {
        "FilterRemover": {"thinning_func_str": "remove_filters"},
        "ChannelRemover": {"thinning_func_str": "remove_channels"},
        "StructureRemover": {"thinning_func_str": "remove_filters"},
    },
}

POLICY_KEY = {"pruners": "pruner", "regularizers": "regularizer", "quantizers": "quantizer",
              "lr_schedulers": "lr_scheduler", "extensions": "extension"}
REGISTERED = [(section, name) for section, names in registry.list_classes().items() for name in names]


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
    elif section == "quantizers":
        assert {name: type(module) for name, module in model.named_modules()} != modules_before, \
            "quantizer replaced no module"
    elif section == "lr_schedulers":
        assert isinstance(policy, distiller.LRPolicy)
    assert torch.isfinite(model(batches[0][0])).all()
