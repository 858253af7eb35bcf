"""--sync-bn: the checks of the flag (CUDA under torchrun only, as PyTorch's SyncBatchNorm), and checkpoints of
a model converted to SyncBatchNorm that load, thinned or not, into the plain model without any process group."""
import argparse

import pytest
import torch

from distiller.apputils import classifier_distributed, classifier_setup, load_checkpoint, save_checkpoint
from distiller.apputils.distributed import ProcessGroupInfo
from distiller.apputils.image_classifier import init_classifier_compression_arg_parser
from distiller.errors import ArgumentError
from distiller.models import create_model
from distiller.thinning import remove_filters


def _args(**overrides):
    args = argparse.Namespace(cpu=False, gpus=None, batch_size=32, load_serialized=False, sync_bn=True)
    return argparse.Namespace(**{**vars(args), **overrides})


@pytest.mark.parametrize("info, message", [
    (None, "--sync-bn synchronises BatchNorm statistics between the processes of a torchrun launch"),
    (ProcessGroupInfo(0, 2, 0, "gloo"), "--sync-bn needs CUDA: torch.nn.SyncBatchNorm has no CPU implementation"),
])
def test_sync_bn_needs_a_torchrun_launch_on_gpus(monkeypatch, info, message):
    monkeypatch.setattr(classifier_distributed, "init_from_env", lambda use_cuda: info)
    with pytest.raises(ArgumentError, match=message.replace(".", r"\.")):
        classifier_distributed.join_process_group(_args())


def test_sync_bn_is_accepted_under_torchrun_on_gpus(monkeypatch):
    monkeypatch.setattr(classifier_distributed, "init_from_env", lambda use_cuda: ProcessGroupInfo(1, 2, 1, "nccl"))
    args = _args()
    assert classifier_distributed.join_process_group(args) == ProcessGroupInfo(1, 2, 1, "nccl")
    assert args.gpus == [1] and args.sync_bn


def test_a_sync_batchnorm_checkpoint_loads_into_the_plain_model(tmp_path):
    # The engine's setup with --sync-bn (the launch checks bypassed: outside a process group SyncBatchNorm
    # normalizes like BatchNorm, on the CPU too).
    args = init_classifier_compression_arg_parser().parse_args(
        ["-a", "resnet20_cifar", "--cpu", "--sync-bn", "-b", "16", "--etrs", "0.02", "-j", "0", "-o", str(tmp_path)])
    args.load_serialized = True
    experiment = classifier_setup.build_experiment(args)
    model = experiment.model
    assert isinstance(model.layer1[0].bn1, torch.nn.SyncBatchNorm)
    assert not any(type(m) is torch.nn.BatchNorm2d for m in model.modules())
    inputs, targets = next(iter(experiment.train_loader))
    torch.nn.functional.cross_entropy(model(inputs), targets).backward()  # a training step moves the statistics
    experiment.optimizer.step()
    with torch.no_grad():
        model.layer1[0].conv1.weight[:3] = 0  # three filters to thin away
    remove_filters(model, experiment.scheduler.zeros_mask_dict, optimizer=experiment.optimizer,
                   dummy_input=experiment.dummy_input, scheduler=experiment.scheduler)
    assert model.layer1[0].bn1.num_features == 13 and model.layer1[0].bn1.running_mean.shape == (13,)
    path = save_checkpoint(0, "resnet20_cifar", model, experiment.optimizer, experiment.scheduler, dir=tmp_path)

    plain = create_model(False, "digits", "resnet20_cifar", parallel=False, device_ids=-1)
    plain_keys = set(plain.state_dict())
    plain, _, _, _ = load_checkpoint(plain, path)  # replays the thinning on plain BatchNorm layers
    assert type(plain.layer1[0].bn1) is torch.nn.BatchNorm2d and plain.layer1[0].bn1.num_features == 13
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert set(saved) == plain_keys  # plain BatchNorm names: weight, bias, running_mean, running_var, ...
    for name, value in model.state_dict().items():
        assert torch.equal(plain.state_dict()[name], value), name
    assert plain.layer1[0].bn1.num_batches_tracked.item() == 1
