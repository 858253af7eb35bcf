"""examples/lottery_ticket/lottery.py: the pruned network's masks on its initial weights, kept fixed while
retraining; a random re-initialisation on request; mismatched checkpoints refused naming both files."""
import os

import pytest
import torch

import distiller
from distiller.apputils import read_checkpoint, save_checkpoint
from distiller.models import create_model

FAST = ["-b", "128", "--etrs", "0.1", "--vs", "0.1", "--etes", "0.2", "--det", "--seed", "1", "--epochs", "1"]
MASKED = ("conv1.weight", "conv2.weight", "fc1.weight")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(untrained, pruned) simplenet_cifar checkpoints: the pruned one masks half of three weights."""
    directory = str(tmp_path_factory.mktemp("lottery"))
    torch.manual_seed(0)
    untrained = create_model(False, "digits", "simplenet_cifar", device_ids=-1)
    untrained_path = save_checkpoint(-1, "simplenet_cifar", untrained, name="untrained", dir=directory)
    pruned = create_model(False, "digits", "simplenet_cifar", device_ids=-1)
    scheduler = distiller.CompressionScheduler(pruned)
    generator = torch.Generator().manual_seed(1)
    for name in MASKED:
        scheduler.zeros_mask_dict[name].mask = (torch.rand(pruned.get_parameter(name).shape,
                                                           generator=generator) < 0.5).float()
    scheduler.mask_all_weights()
    return untrained_path, save_checkpoint(3, "simplenet_cifar", pruned, scheduler=scheduler, name="pruned",
                                           dir=directory)


def _final_and_expected(run_dir, untrained_path, pruned_path):
    final = read_checkpoint(os.path.join(run_dir, "checkpoint.pth.tar"))["state_dict"]
    initial = read_checkpoint(untrained_path)["state_dict"]
    masks = read_checkpoint(pruned_path)["compression_sched"]["masks_dict"]
    return final, initial, masks


def test_initial_weights_take_the_masks_and_keep_them(run_lottery, checkpoints, tmp_path):
    untrained, pruned = checkpoints
    # A vanishing learning rate: the retrained weights are the masked initial weights.
    still = run_lottery(*FAST, "--lr", "1e-9", "--lt-untrained-ckpt", untrained, "--lt-pruned-ckpt", pruned,
                        "-o", tmp_path, "-n", "still")
    assert still.status == 0, still.stderr
    final, initial, masks = _final_and_expected(still.run_dir, untrained, pruned)
    for name in MASKED:
        torch.testing.assert_close(final[name], initial[name] * masks[name], atol=1e-6, rtol=0)
    trained = run_lottery(*FAST, "--lt-untrained-ckpt", untrained, "--lt-pruned-ckpt", pruned, "-o", tmp_path,
                          "-n", "trained")
    assert trained.status == 0, trained.stderr
    final, initial, masks = _final_and_expected(trained.run_dir, untrained, pruned)
    for name in MASKED:
        assert torch.all(final[name][masks[name] == 0] == 0), name  # momentum and weight decay did not revive them
        assert not torch.allclose(final[name], initial[name] * masks[name])
    assert trained.summary["lottery"]["masked_parameters"] == len(MASKED)
    assert trained.summary["sparsity"] > 25


def test_random_init_applies_the_masks_to_other_weights(run_lottery, checkpoints, tmp_path):
    untrained, pruned = checkpoints
    result = run_lottery(*FAST, "--lr", "1e-9", "--lt-random-init", "--lt-untrained-ckpt", untrained,
                         "--lt-pruned-ckpt", pruned, "-o", tmp_path)
    assert result.status == 0, result.stderr
    final, initial, masks = _final_and_expected(result.run_dir, untrained, pruned)
    for name in MASKED:
        assert torch.all(final[name][masks[name] == 0] == 0)
        assert not torch.allclose(final[name], initial[name] * masks[name])


def test_checkpoints_of_different_networks_are_refused_naming_both(run_lottery, checkpoints, tmp_path):
    untrained, _ = checkpoints
    other = save_checkpoint(0, "resnet20_cifar", create_model(False, "digits", "resnet20_cifar", device_ids=-1),
                            name="other", dir=str(tmp_path))
    result = run_lottery(*FAST, "--lt-untrained-ckpt", untrained, "--lt-pruned-ckpt", other, "-o", tmp_path)
    assert result.status == 2 and untrained in result.stderr and other in result.stderr, result.stderr
    assert "different architectures" in result.stderr
    assert result.run_dir is None


def test_unpruned_checkpoint_is_refused(run_lottery, checkpoints, tmp_path):
    untrained, _ = checkpoints
    result = run_lottery(*FAST, "--lt-untrained-ckpt", untrained, "--lt-pruned-ckpt", untrained, "-o", tmp_path)
    assert result.status == 2 and "holds no pruning masks" in result.stderr, result.stderr


def test_random_init_that_repeats_the_initial_weights_is_refused(run_classifier, run_lottery, checkpoints, tmp_path):
    _, pruned = checkpoints
    first = run_classifier("-a", "simplenet_cifar", *FAST, "--save-untrained-model", "-o", tmp_path)
    assert first.status == 0, first.stderr
    untrained = os.path.join(first.run_dir, "untrained_checkpoint.pth.tar")
    result = run_lottery(*FAST, "--lt-random-init", "--lt-untrained-ckpt", untrained, "--lt-pruned-ckpt", pruned,
                         "-o", tmp_path)
    assert result.status == 2 and "--seed 1 gives the very weights" in result.stderr, result.stderr
