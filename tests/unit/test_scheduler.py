"""CompressionScheduler and ParameterMasker semantics."""
import pytest
import torch

import distiller
from distiller.pruning import AutomatedGradualPruner, SparsityLevelParameterPruner
from distiller.testing import TinyCNN, train_with_scheduler


def _level_policy(model, level=0.5, **pruner_args):
    pruner = SparsityLevelParameterPruner("level", levels={"conv2.weight": level})
    return distiller.PruningPolicy(pruner, pruner_args)


def test_device_is_taken_from_model(tiny_model):
    assert distiller.CompressionScheduler(tiny_model).device == torch.device("cpu")


def test_masks_survive_momentum_and_weight_decay(tiny_model, batches):
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    scheduler = distiller.CompressionScheduler(tiny_model)
    scheduler.add_policy(_level_policy(tiny_model), epochs=[0])
    train_with_scheduler(tiny_model, optimizer, scheduler, batches, epochs=3)
    mask = scheduler.zeros_mask_dict["conv2.weight"].mask
    assert mask is not None and mask.dtype == torch.bool and float(mask.float().mean()) == pytest.approx(0.5)
    # Every masked weight is still exactly zero although momentum keeps pushing it.
    assert torch.all(tiny_model.conv2.weight[mask == 0] == 0)
    assert optimizer.state[tiny_model.conv2.weight]["momentum_buffer"][mask == 0].abs().sum() > 0


def test_without_scheduler_masking_weights_would_revive(tiny_model, batches):
    """Control for the test above: momentum really does move zeroed weights."""
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.1, momentum=0.9)
    with torch.no_grad():
        tiny_model.conv2.weight[:, :4] = 0
    train_with_scheduler(tiny_model, optimizer, None, batches, epochs=1)
    assert tiny_model.conv2.weight[:, :4].abs().sum() > 0


def test_mask_on_forward_only_with_double_copies_updates_hidden_weights(tiny_model, batches):
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.1)
    scheduler = distiller.CompressionScheduler(tiny_model)
    scheduler.add_policy(_level_policy(tiny_model, mask_on_forward_only=True, use_double_copies=True), epochs=[0, 1])
    masker = scheduler.zeros_mask_dict["conv2.weight"]
    seen_in_forward = []
    tiny_model.conv2.register_forward_pre_hook(
        lambda m, i: seen_in_forward.append((m.weight.detach().clone(), masker.mask.clone())))
    train_with_scheduler(tiny_model, optimizer, scheduler, batches, epochs=2)
    mask = masker.mask
    # The forward pass always saw masked weights ...
    assert len(seen_in_forward) == 6
    assert all(torch.all(w[m == 0] == 0) for w, m in seen_in_forward)
    # ... while the stored (unmasked) copy keeps training: masked positions are non-zero after the step.
    assert tiny_model.conv2.weight[mask == 0].abs().sum() > 0


def test_keep_mask_hardens_soft_masks_at_policy_end(tiny_model, batches):
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.1)
    scheduler = distiller.CompressionScheduler(tiny_model)
    scheduler.add_policy(_level_policy(tiny_model, mask_on_forward_only=True, use_double_copies=True,
                                       keep_mask=True), epochs=[0])
    train_with_scheduler(tiny_model, optimizer, scheduler, batches, epochs=2)
    masker = scheduler.zeros_mask_dict["conv2.weight"]
    assert not masker.is_soft
    assert torch.all(tiny_model.conv2.weight[masker.mask == 0] == 0)


def test_mask_gradients_zeroes_masked_gradients(tiny_model, batches):
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.1)
    scheduler = distiller.CompressionScheduler(tiny_model)
    scheduler.add_policy(_level_policy(tiny_model, mask_gradients=True), epochs=[0, 1])
    scheduler.on_epoch_begin(0, optimizer)
    inputs, target = batches[0]
    torch.nn.functional.cross_entropy(tiny_model(inputs), target).backward()
    mask = scheduler.zeros_mask_dict["conv2.weight"].mask
    assert torch.all(tiny_model.conv2.weight.grad[mask == 0] == 0)
    assert tiny_model.conv2.weight.grad[mask == 1].abs().sum() > 0


def test_mini_batch_pruning_frequency_prunes_inside_the_epoch(tiny_model, batches):
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.01)
    scheduler = distiller.CompressionScheduler(tiny_model)
    pruner = AutomatedGradualPruner("agp", 0.0, 0.6, ["conv2.weight"])
    scheduler.add_policy(distiller.PruningPolicy(pruner, {"mini_batch_pruning_frequency": 1}),
                         starting_epoch=0, ending_epoch=3)
    sparsities = []
    scheduler.on_epoch_begin(0, optimizer)
    for step in range(3):
        scheduler.on_minibatch_begin(0, step, 3, optimizer)
        sparsities.append(float((tiny_model.conv2.weight == 0).float().mean()))
    assert sparsities[0] == 0.0 and sparsities[1] < sparsities[2]


def test_discard_masks_at_minibatch_end(tiny_model, batches):
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.1)
    scheduler = distiller.CompressionScheduler(tiny_model)
    scheduler.add_policy(_level_policy(tiny_model, discard_masks_at_minibatch_end=True), epochs=[0])
    train_with_scheduler(tiny_model, optimizer, scheduler, batches, epochs=1)
    assert scheduler.zeros_mask_dict["conv2.weight"].mask is None


def test_fused_masking_follows_mask_changes(tiny_model):
    scheduler = distiller.CompressionScheduler(tiny_model)
    masker = scheduler.zeros_mask_dict["conv1.weight"]
    masker.mask = torch.zeros_like(tiny_model.conv1.weight)
    scheduler.mask_all_weights(is_forward=False)
    assert tiny_model.conv1.weight.abs().sum() == 0
    masker.mask = None
    scheduler.zeros_mask_dict["fc.weight"].mask = torch.zeros_like(tiny_model.fc.weight)
    scheduler.mask_all_weights(is_forward=False)
    assert tiny_model.fc.weight.abs().sum() == 0


def test_add_policy_rejects_bad_ranges_and_unmatched_names(tiny_model):
    scheduler = distiller.CompressionScheduler(tiny_model)
    with pytest.raises(ValueError, match="ending_epoch"):
        scheduler.add_policy(_level_policy(tiny_model), starting_epoch=3, ending_epoch=3)
    pruner = SparsityLevelParameterPruner("level", levels={"conv9.weight": 0.5})
    with pytest.raises(distiller.UnmatchedNameError, match="conv9.weight"):
        scheduler.add_policy(distiller.PruningPolicy(pruner, None), epochs=[0])


def test_policy_scope_limits_by_class_and_layer(tiny_model):
    pruner = SparsityLevelParameterPruner("level", levels={"*": 0.5})
    policy = distiller.PruningPolicy(pruner, None, classes=["Conv2d"], layers=["conv1", "conv2"])
    distiller.CompressionScheduler(tiny_model).add_policy(policy, epochs=[0])
    assert policy.param_names == ["conv1.weight", "conv2.weight"]


def test_state_dict_round_trip_and_parallel_names(tiny_model):
    scheduler = distiller.CompressionScheduler(tiny_model)
    mask = (torch.rand_like(tiny_model.conv1.weight) > 0.5).float()
    scheduler.zeros_mask_dict["conv1.weight"].mask = mask
    state = scheduler.state_dict()
    state["masks_dict"] = {"module." + k: v for k, v in state["masks_dict"].items()}
    restored = distiller.CompressionScheduler(TinyCNN())
    restored.load_state_dict(state, normalize_dataparallel_keys=True)
    assert torch.equal(restored.zeros_mask_dict["conv1.weight"].mask, mask)
    with pytest.raises(ValueError, match="does not have"):
        restored.init_from_masks_dict({"conv7.weight": mask})


def test_before_backward_pass_returns_components(tiny_model, batches):
    from distiller.policy import LossComponent, PolicyLoss

    class AddOne(distiller.ScheduledTrainingPolicy):
        def before_backward_pass(self, model, epoch, minibatch_id, minibatches_per_epoch, loss, zeros_mask_dict,
                                 optimizer=None):
            return PolicyLoss(loss + 1, [LossComponent("one", torch.tensor(1.0))])

    scheduler = distiller.CompressionScheduler(tiny_model)
    scheduler.add_policy(AddOne(), epochs=[0])
    result = scheduler.before_backward_pass(0, 0, 1, torch.tensor(2.0), return_loss_components=True)
    assert float(result.overall_loss) == 3.0 and result.loss_components[0].name == "one"
    assert float(scheduler.before_backward_pass(1, 0, 1, torch.tensor(2.0))) == 2.0


def test_keep_mask_hardens_at_last_scheduled_epoch_with_frequency(tiny_model, batches):
    """Epochs 0..3 every 2 run on 0 and 2: the masks harden at epoch 2 (ending_epoch - 1 never runs)."""
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.1)
    scheduler = distiller.CompressionScheduler(tiny_model)
    scheduler.add_policy(_level_policy(tiny_model, mask_on_forward_only=True, keep_mask=True),
                         starting_epoch=0, ending_epoch=4, frequency=2)
    train_with_scheduler(tiny_model, optimizer, scheduler, batches, epochs=4)
    assert not scheduler.zeros_mask_dict["conv2.weight"].is_soft


def test_levels_override_retargets_the_pruner(tiny_model):
    pruner = SparsityLevelParameterPruner("level", levels={"conv1.weight": 0.5})
    policy = distiller.PruningPolicy(pruner, {"levels": {"conv2.weight": 0.25}})
    scheduler = distiller.CompressionScheduler(tiny_model)
    scheduler.add_policy(policy, epochs=[0])
    scheduler.on_epoch_begin(0)
    assert policy.param_names == ["conv2.weight"]
    assert float((tiny_model.conv2.weight == 0).float().mean()) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="has no 'levels'"):
        distiller.PruningPolicy(AutomatedGradualPruner("agp", 0.1, 0.5, ["conv1.weight"]), {"levels": {"x": 0.1}})


def test_soft_masks_applied_masks_for_evaluation_then_restores(tiny_model, batches):
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.1)
    scheduler = distiller.CompressionScheduler(tiny_model)
    scheduler.add_policy(_level_policy(tiny_model, mask_on_forward_only=True, use_double_copies=True), epochs=[0])
    train_with_scheduler(tiny_model, optimizer, scheduler, batches, epochs=1)
    mask = scheduler.zeros_mask_dict["conv2.weight"].mask
    unmasked = tiny_model.conv2.weight.detach().clone()
    assert unmasked[mask == 0].abs().sum() > 0
    with scheduler.soft_masks_applied():
        assert torch.all(tiny_model.conv2.weight[mask == 0] == 0)
    assert torch.equal(tiny_model.conv2.weight, unmasked)
