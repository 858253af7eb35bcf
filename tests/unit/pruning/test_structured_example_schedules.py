"""The structure-pruning example schedules load on resnet20_cifar, run the first and last epoch of each of their
compression policies, and every policy is shown to have had its effect:

* a threshold (a regularizer's ``threshold_criteria`` or a ``StructureParameterPruner``) zeroes the structures
  at or below it, and a thinning extension then removes them. A few random-data steps cannot drive a group
  to zero, so one group of each thresholded weight is held far below its threshold: exactly that group
  must end up zero or removed;
* a regularizer with a loss term adds a positive term to the loss in its epochs;
* DropFilter drops each filter's output with its probability in training forward passes, none in evaluation;
* a pruner whose masks are discarded after each mini-batch (random filter drop) zeroes filters in training
  forward passes and leaves the stored weights whole;
* every other pruner leaves zeros in its masks, or thinning removed structures of its weights.
"""
import glob
import os

import pytest
import torch

import distiller
import distiller.regularization  # noqa: F401 - registers the regularizers
import distiller.thinning  # noqa: F401 - registers the thinning extensions
from distiller.models import create_model
from distiller.norms import canonical_group_type, expand_structure_mask, structure_view
from distiller.pruning import StructureParameterPruner
from distiller.regularization import DropFilterRegularizer
from distiller.regularization.group_lasso import GROUP_TYPES
from distiller.testing import train_with_scheduler
from distiller.utils import pattern_lookup

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SCHEDULES = sorted(
    glob.glob(os.path.join(ROOT, "examples", "agp-pruning", "*filters*.yaml"))
    + [path for folder in ("pruning_filters_for_efficient_convnets", "network_trimming", "ssl", "hybrid",
                           "drop_filter")
       for path in glob.glob(os.path.join(ROOT, "examples", folder, "*.yaml"))])
SHRINK = 1e-4  # the factor that puts one group of each thresholded weight far below its threshold


def module_of(param_name: str) -> str:
    return param_name.rsplit(".", 1)[0]


def compression_epochs(scheduler: distiller.CompressionScheduler) -> dict:
    """Each non-LR policy -> the sorted epochs it is scheduled at."""
    epochs = {}
    for epoch, policies in scheduler.policies.items():
        for policy in policies:
            if not isinstance(policy, distiller.LRPolicy):
                epochs.setdefault(policy, []).append(epoch)
    return {policy: sorted(e) for policy, e in epochs.items()}


def thresholded_structures(policies) -> dict:
    """Weight name -> the structure type that a policy's threshold zeroes."""
    structures = {}
    for policy in policies:
        if isinstance(policy, distiller.RegularizationPolicy) and policy.regularizer.threshold_criteria:
            for name in policy.param_names:
                group_type = pattern_lookup(policy.regularizer.reg_regims, name)[1]
                structures[name] = GROUP_TYPES[group_type][0]
        elif isinstance(policy, distiller.PruningPolicy) and isinstance(policy.pruner, StructureParameterPruner):
            for name in policy.param_names:
                structures[name] = canonical_group_type(pattern_lookup(policy.pruner.reg_regims, name)[1])
    return structures


def pin_first_structure_near_zero(param: torch.nn.Parameter, structure: str) -> int:
    """Scales structure 0 of ``param`` by SHRINK and zeroes its gradient; returns the number of structures.

    Without the gradient hook one step would undo the shrinking: a BatchNorm after the layer makes the
    gradient of a tiny filter (or layer) inversely proportional to its size.
    """
    count = structure_view(param.detach(), structure).shape[0]
    keep = torch.ones(count)
    keep[0] = 0
    mask = expand_structure_mask(keep, param.shape, structure)
    with torch.no_grad():
        param.mul_(mask + (1 - mask) * SHRINK)
    # once thinning has removed structures, the gradient no longer has the mask's shape
    param.register_hook(lambda grad: grad * mask if grad.shape == mask.shape else grad)
    return count


def record_filter_outputs(model: torch.nn.Module, layers: list, log: list) -> list:
    """Forward hooks logging (training mode, per-filter output is all zero) for each of ``layers``."""
    modules = dict(model.named_modules())
    return [modules[layer].register_forward_hook(
        lambda module, inputs, output: log.append((module.training, output.detach().abs().sum(dim=(0, 2, 3)) == 0)))
        for layer in layers]


def record_zero_filters_of_weights(model: torch.nn.Module, layers: list, log: list) -> list:
    """Forward pre-hooks logging (training mode, per-filter weight is all zero) for each of ``layers``."""
    modules = dict(model.named_modules())
    return [modules[layer].register_forward_pre_hook(
        lambda module, inputs: log.append((module.training, module.weight.detach().flatten(1).abs().sum(1) == 0)))
        for layer in layers]


def test_the_example_schedules_exist():
    assert len(SCHEDULES) >= 12


@pytest.mark.parametrize("path", SCHEDULES, ids=[os.path.relpath(p, ROOT) for p in SCHEDULES])
def test_example_schedule_runs_on_resnet20_and_each_policy_has_its_effect(path):
    with open(path) as text:
        header = text.read()
    assert "compress_classifier.py --arch resnet20_cifar" in header
    assert "# Result on digits" in header and "(pending)" not in header, "the header needs the measured result"
    torch.manual_seed(0)
    model = create_model(False, "cifar10", "resnet20_cifar", device_ids=-1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = distiller.file_config(model, optimizer, path)
    policies = compression_epochs(scheduler)
    params = dict(model.named_parameters())
    shapes_before = {name: param.shape for name, param in params.items()}

    thresholded = thresholded_structures(policies)
    counts_before = {name: pin_first_structure_near_zero(params[name], structure)
                     for name, structure in thresholded.items()}
    drop_filter = [p for p in policies if isinstance(getattr(p, "regularizer", None), DropFilterRegularizer)]
    drop_layers = {module_of(n): pattern_lookup(p.regularizer.reg_regims, n)
                   for p in drop_filter for n in p.param_names}
    outputs = []
    record_filter_outputs(model, list(drop_layers), outputs)
    discarding = [p for p in policies if isinstance(p, distiller.PruningPolicy) and p.discard_masks_at_minibatch_end]
    masked_forwards = []
    record_zero_filters_of_weights(model, [module_of(n) for p in discarding for n in p.param_names], masked_forwards)

    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 3, 32, 32, generator=generator), torch.randint(0, 10, (4,), generator=generator))
               for _ in range(2)]
    for epoch in sorted({e for epochs in policies.values() for e in (epochs[0], epochs[-1])}):
        loss = train_with_scheduler(model, optimizer, scheduler, batches, epochs=1, start_epoch=epoch)
        assert torch.isfinite(loss)
    params = dict(model.named_parameters())
    thinned = {name for name, param in params.items() if param.shape != shapes_before[name]}

    for name, structure in thresholded.items():
        groups = structure_view(params[name].detach(), structure)
        zeroed = int((groups.abs().amax(dim=1) == 0).sum()) + counts_before[name] - groups.shape[0]
        assert zeroed == 1, f"{name}: {zeroed} {structure} groups zeroed or removed; expected the one below threshold"
    for policy, epochs in policies.items():
        if isinstance(policy, distiller.RegularizationPolicy) and policy not in drop_filter:
            loss = scheduler.before_backward_pass(epochs[0], 0, 2, torch.tensor(0.0), optimizer,
                                                  return_loss_components=True)
            assert sum(float(c.value.detach()) for c in loss.loss_components) > 0, "the regularizer added no loss term"
        elif isinstance(policy, distiller.PruningPolicy) and policy not in discarding:
            for name in policy.param_names:
                mask = scheduler.zeros_mask_dict[name].mask
                assert name in thinned or (mask is not None and (mask == 0).any()), f"{name} was not pruned"
    if drop_filter:
        dropped = torch.cat([zero for training, zero in outputs if training]).float().mean().item()
        expected = sum(drop_layers.values()) / len(drop_layers)
        assert abs(dropped - expected) < 0.05, f"{dropped:.3f} of the filter outputs dropped, expected {expected}"
        outputs.clear()
        model.eval()
        model(batches[0][0])
        assert not any(zero.any() for _, zero in outputs), "DropFilter dropped filters in evaluation"
    if discarding:
        assert any(zero.any() for training, zero in masked_forwards if training), "no filter was dropped in training"
        assert all((params[n].detach().flatten(1).abs().sum(1) > 0).all() for p in discarding for n in p.param_names), \
            "the filter masks were not discarded after the mini-batch"
