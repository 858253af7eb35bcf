"""Checkpoints of pruned, thinned and quantized models (in every order the app can produce) reload into a
freshly built model with identical outputs, masks on the transformed parameter names."""
import copy

import pytest
import torch

import distiller
import distiller.thinning
from distiller.apputils import load_checkpoint, save_checkpoint
from distiller.data_loggers import collect_quant_stats
from distiller.quantization import PostTrainLinearQuantizer
from distiller.testing import TinyCNN, train_with_scheduler

QAT = {"quantizers": {"q": {"class": "QuantAwareTrainRangeLinearQuantizer", "bits_activations": 8,
                            "bits_weights": 4, "per_channel_wts": True}},
       "policies": [{"quantizer": {"instance_name": "q"}, "starting_epoch": 0, "ending_epoch": 2}]}


def _fresh(seed=0):
    torch.manual_seed(seed)
    model = TinyCNN()
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def _prune(model, scheduler, optimizer, batches):
    """Zeroes 3 conv1 filters (with their BatchNorm channels, so thinning is exact) and small fc weights."""
    params = dict(model.named_parameters())
    for name in ("conv1.weight", "bn1.weight", "bn1.bias"):
        mask = torch.ones_like(params[name])
        mask[:3] = 0
        scheduler.zeros_mask_dict[name].mask = mask
    scheduler.zeros_mask_dict["fc.weight"].mask = (params["fc.weight"].abs() > 0.1).float()
    scheduler.mask_all_weights()
    return scheduler


def _thin(model, scheduler, optimizer, batches):
    distiller.thinning.remove_filters(model, scheduler.zeros_mask_dict, optimizer=optimizer,
                                      dummy_input=batches[0][0], scheduler=scheduler)
    assert model.conv1.out_channels == 5
    return scheduler


def _ptq(model, scheduler, optimizer, batches, mode="asym_u"):
    """Post-training quantization as ``-e --quantize-eval`` does it (calibrated, BatchNorms folded)."""
    model.eval()
    stats = collect_quant_stats(model, lambda m: [m(x) for x, _ in batches])
    quantizer = PostTrainLinearQuantizer(model, bits_activations=8, bits_parameters=8, per_channel_wts=True,
                                         mode=mode, model_activation_stats=stats)
    quantizer.prepare_model(batches[0][0])
    scheduler.record_transform("quantization", {"quantizer": quantizer.state_dict()}, keep_masks=False)
    return scheduler


def _qat(model, scheduler, optimizer, batches):
    """Quantization-aware training from a schedule, two epochs (the masks must keep applying)."""
    scheduler = distiller.config.dict_config(model, optimizer, QAT, scheduler)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=2)
    return scheduler


STEPS = {"pruned": _prune, "thinned": _thin, "ptq": _ptq, "qat": _qat}
# What the app produces: pruning (a schedule), thinning of pruned structures (--thinnify, or a thinning
# extension), post-training quantization last (-e --quantize-eval) and QAT (a schedule, alone or with
# pruning; a thinned checkpoint continues with --exp-load-weights-from and a QAT schedule).
COMBINATIONS = [("pruned",), ("ptq",), ("qat",), ("pruned", "thinned"), ("pruned", "ptq"),
                ("pruned", "thinned", "ptq"), ("pruned", "qat"), ("pruned", "thinned", "qat")]


def _zero_fraction(model, name_end):
    weight = next(p for n, p in model.named_parameters() if n.endswith(name_end))
    return float((weight == 0).float().mean())


@pytest.mark.parametrize("steps", COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS])
def test_transformed_checkpoint_reloads_with_identical_outputs(steps, batches, tmp_path):
    model, optimizer = _fresh()
    scheduler = distiller.CompressionScheduler(model)
    for step in steps:
        scheduler = STEPS[step](model, scheduler, optimizer, batches)
    model.eval()
    # The app saves post-training-quantized models without an optimizer (it cannot train them).
    path = save_checkpoint(3, "tiny", model, None if "ptq" in steps else optimizer, scheduler, dir=str(tmp_path))
    saved = torch.load(path, weights_only=True)["compression_sched"]
    masks = {name for name, mask in saved["masks_dict"].items() if mask is not None}
    assert masks <= {name for name, _ in model.named_parameters()}  # named as in the transformed model
    assert ("pruned" in steps and "ptq" not in steps) == bool(masks)  # PTQ ends the masks' use

    fresh = _fresh(seed=1)[0]
    fresh, loaded_sched, _, _ = load_checkpoint(fresh, path)
    fresh.eval()
    with torch.no_grad():
        for x, _ in batches:
            assert torch.equal(fresh(x), model(x))
    assert [(n, type(m)) for n, m in fresh.named_modules()] == [(n, type(m)) for n, m in model.named_modules()]
    assert [t["kind"] for t in loaded_sched.model_transforms] == [t["kind"] for t in scheduler.model_transforms]
    for name, masker in scheduler.zeros_mask_dict.items():
        if masker.mask is not None:
            assert torch.equal(loaded_sched.zeros_mask_dict[name].mask, masker.mask), name


def test_masks_keep_applying_after_quantization_aware_training_renames_the_weights(batches):
    model, optimizer = _fresh()
    scheduler = _prune(model, distiller.CompressionScheduler(model), optimizer, batches)
    conv1_mask = scheduler.zeros_mask_dict["conv1.weight"].mask
    scheduler = _qat(model, scheduler, optimizer, batches)  # SGD with momentum would revive unmasked weights
    assert "conv1.weight" not in scheduler.zeros_mask_dict
    assert scheduler.zeros_mask_dict["conv1.float_weight"].mask is conv1_mask
    assert torch.count_nonzero(model.conv1.float_weight[:3]) == 0
    assert _zero_fraction(model, "fc.float_weight") > 0


def test_masks_follow_thinning_and_wrapping_of_layers(batches):
    model, optimizer = _fresh()
    scheduler = distiller.CompressionScheduler(model)
    for step in ("pruned", "thinned"):
        scheduler = STEPS[step](model, scheduler, optimizer, batches)
    fc_mask = scheduler.zeros_mask_dict["fc.weight"].mask
    quantizer = PostTrainLinearQuantizer(model.eval(), bits_activations=None, bits_parameters=8)
    quantizer.prepare_model(batches[0][0])
    scheduler.record_transform("quantization", {"quantizer": quantizer.state_dict()})
    assert scheduler.zeros_mask_dict["fc.wrapped_module.weight"].mask is fc_mask
    assert scheduler.zeros_mask_dict["conv1.wrapped_module.weight"].mask.shape == (5, 3, 3, 3)  # sliced
    assert "fc.weight" not in scheduler.zeros_mask_dict
    assert "bn1.weight" not in scheduler.zeros_mask_dict  # folded into conv1 by the quantizer: gone


def test_post_training_quantization_ends_the_masks_so_integer_codes_are_not_corrupted(batches):
    model, optimizer = _fresh()
    scheduler = _prune(model, distiller.CompressionScheduler(model), optimizer, batches)
    scheduler = _ptq(model, scheduler, optimizer, batches, mode="asym_u")
    assert all(masker.mask is None for masker in scheduler.zeros_mask_dict.values())
    with torch.no_grad():
        before = model(batches[0][0])
        scheduler.mask_all_weights()  # as evaluating a loaded checkpoint does
        assert torch.equal(model(batches[0][0]), before)


def test_refused_load_leaves_model_and_optimizer_untouched(batches, tmp_path):
    model, optimizer = _fresh()
    scheduler = distiller.CompressionScheduler(model)
    for step in ("pruned", "thinned", "ptq"):
        scheduler = STEPS[step](model, scheduler, optimizer, batches)
    path = save_checkpoint(0, "tiny", model, scheduler=scheduler, dir=str(tmp_path))
    wide, wide_optimizer = _fresh()
    wide.fc = torch.nn.Linear(16, 4)  # another head: the weights cannot fit
    before = copy.deepcopy(wide.state_dict())
    groups = [list(g["params"]) for g in wide_optimizer.param_groups]
    with pytest.raises(distiller.errors.CheckpointError, match="fc.wrapped_module.weight"):
        load_checkpoint(wide, path, optimizer=wide_optimizer)
    assert wide.conv1.out_channels == 8 and isinstance(wide.conv1, torch.nn.Conv2d)  # not thinned nor quantized
    assert all(torch.equal(t, before[k]) for k, t in wide.state_dict().items())
    assert [list(g["params"]) for g in wide_optimizer.param_groups] == groups
