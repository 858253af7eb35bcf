"""AGP inside a real training loop: exact final sparsity, and masked weights stay zero under momentum."""
import math

import torch

from distiller.policy import PruningPolicy
from distiller.pruning import AutomatedGradualPruner
from distiller.scheduler import CompressionScheduler

TARGETS = ("conv1.weight", "conv2.weight", "fc.weight")


def tiny_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))


def test_training_with_agp_reaches_exact_sparsity_and_masks_survive_momentum():
    model = tiny_cnn()
    names = {"0.weight": "conv1.weight", "2.weight": "conv2.weight", "6.weight": "fc.weight"}
    pruner = AutomatedGradualPruner("agp", initial_sparsity=0.2, final_sparsity=0.7, weights=list(names))
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(PruningPolicy(pruner, None), starting_epoch=0, ending_epoch=3, frequency=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    inputs, labels = torch.randn(8, 3, 6, 6), torch.randint(0, 4, (8,))
    params = dict(model.named_parameters())
    batches = 2
    for epoch in range(4):
        scheduler.on_epoch_begin(epoch, optimizer)
        for step in range(batches):
            x, y = inputs[step * 4:(step + 1) * 4], labels[step * 4:(step + 1) * 4]
            scheduler.on_minibatch_begin(epoch, step, batches, optimizer)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss = scheduler.before_backward_pass(epoch, step, batches, loss, optimizer)
            optimizer.zero_grad()
            loss.backward()
            scheduler.before_parameter_optimization(epoch, step, batches, optimizer)
            optimizer.step()
            scheduler.on_minibatch_end(epoch, step, batches, optimizer)
            for name in names:
                mask = scheduler.zeros_mask_dict[name].mask
                assert torch.all(params[name][mask == 0] == 0), (epoch, step, name)
                assert torch.all(params[name][mask == 1] != 0), "training must move the kept weights"
        scheduler.on_epoch_end(epoch, optimizer)
    for name, label in names.items():
        param = params[name]
        assert int((param == 0).sum()) == math.floor(0.7 * param.numel()), label
    # momentum buffers of pruned weights are not zero: only the re-applied masks keep them pruned
    momentum = optimizer.state[params["0.weight"]]["momentum_buffer"]
    assert torch.count_nonzero(momentum[scheduler.zeros_mask_dict["0.weight"].mask == 0]) > 0
